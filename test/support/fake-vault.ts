/*
 * A loopback stand-in for the HashiCorp Vault KV version 2 read endpoint,
 * GET /v1/{mount}/data/{path} with an X-Vault-Token header. Its responses
 * follow Vault's JSON shapes for 200, 403, 404, 503 (sealed), a deleted
 * latest version, and a KV version 1 mount.
 */
import { createServer, type Server } from "node:http";
import { createServer as createTcpServer, type Socket } from "node:net";

export interface FakeVaultOptions {
  /** The only token that may read. */
  readonly token: string;
  /** Secrets by "mount/path", such as "secret/mnemos/engram". */
  readonly secrets: Record<string, Record<string, unknown>>;
  /** Paths whose latest version was deleted, by "mount/path". */
  readonly deleted?: readonly string[];
  /** Mounts that behave as KV version 1, which has no /data/ level. */
  readonly kvV1Mounts?: readonly string[];
  /** Paths that respond with a redirect to this URL, by "mount/path". */
  readonly redirects?: Record<string, string>;
}

export interface FakeVault {
  /** Base URL, such as http://127.0.0.1:43121. */
  readonly url: string;
  /** Every request path received, in order. */
  readonly requests: string[];
  /** Makes every read respond 503 "Vault is sealed", as a sealed Vault does. */
  sealed: boolean;
  close(): Promise<void>;
}

const KV_DATA_PATH = /^\/v1\/([^/]+)\/data\/(.+)$/;

/** Starts the fake on 127.0.0.1 with a port the system picks. */
export async function startFakeVault(options: FakeVaultOptions): Promise<FakeVault> {
  const requests: string[] = [];
  const state = { sealed: false };

  const server = createServer((request, response) => {
    const send = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      response.writeHead(status, { "content-type": "application/json", ...headers });
      response.end(JSON.stringify(body));
    };
    const url = request.url ?? "";
    requests.push(url);

    if (state.sealed) return send(503, { errors: ["Vault is sealed"] });
    if (request.headers["x-vault-token"] !== options.token) return send(403, { errors: ["1 error occurred:\n\t* permission denied\n\n"] });

    const match = KV_DATA_PATH.exec(url);
    if (request.method !== "GET" || !match) return send(404, { errors: [] });
    const mount = decodeURIComponent(match[1]!);
    const path = match[2]!.split("/").map(decodeURIComponent).join("/");
    const key = `${mount}/${path}`;

    const redirect = options.redirects?.[key];
    if (redirect) return send(307, {}, { location: redirect });
    if (options.kvV1Mounts?.includes(mount)) {
      // A KV version 1 mount stores "data/..." as an ordinary path.
      const v1 = options.secrets[`${mount}/data/${path}`];
      return v1 ? send(200, envelope(v1)) : send(404, { errors: [] });
    }
    if (options.deleted?.includes(key)) {
      return send(404, envelope({ data: null, metadata: metadata(3, "2026-01-02T03:04:05.000000006Z") }));
    }
    const fields = options.secrets[key];
    if (!fields) return send(404, { errors: [] });
    send(200, envelope({ data: fields, metadata: metadata(1, "") }));
  });

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${port(server)}`,
    requests,
    get sealed() {
      return state.sealed;
    },
    set sealed(value: boolean) {
      state.sealed = value;
    },
    close: () => closeServer(server),
  };
}

/** Starts a TCP server on 127.0.0.1 that accepts connections and never responds, as a hung Vault would. */
export async function startSilentServer(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createTcpServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${port(server)}`,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
    },
  };
}

/** Returns a loopback URL whose port had a listener a moment ago and has none now. */
export async function closedPortUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${port(server)}`;
  await closeServer(server);
  return url;
}

function envelope(data: unknown): Record<string, unknown> {
  return { request_id: "00000000-0000-0000-0000-000000000000", lease_id: "", renewable: false, lease_duration: 0, data, wrap_info: null, warnings: null, auth: null };
}

function metadata(version: number, deletionTime: string): Record<string, unknown> {
  return { created_time: "2026-01-01T00:00:00.000000000Z", custom_metadata: null, deletion_time: deletionTime, destroyed: false, version };
}

function port(server: { address(): unknown }): number {
  return (server.address() as { port: number }).port;
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
}
