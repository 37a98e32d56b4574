import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";

import { Code, ConnectError, createClient, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { HealthStatus, registerHealth } from "../src/api/health.js";

interface TestServer {
  port: number;
  close(): Promise<void>;
}

async function startServer(routes: (router: ConnectRouter) => void): Promise<TestServer> {
  const server = http2.createServer(connectNodeAdapter({ routes }));
  // Clients keep HTTP/2 sessions open, and server.close() waits for them.
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    port,
    // Idempotent, so a test may close the server early and afterEach may close it again.
    close: () => {
      closing ??= new Promise<void>((resolve, reject) => {
        for (const session of sessions) {
          session.destroy();
        }
        server.close((error) => (error ? reject(error) : resolve()));
      });
      return closing;
    },
  };
}

describe("HealthStatus", () => {
  it("starts with the server SERVING", () => {
    const health = new HealthStatus();

    expect(health.get("")).toBe(ServingStatus.SERVING);
    expect(health.get("engram.v1.StorageService")).toBeUndefined();
  });

  it("rejects SERVICE_UNKNOWN", () => {
    const health = new HealthStatus();

    expect(() => health.set("a", ServingStatus.SERVICE_UNKNOWN)).toThrow(RangeError);
    expect(health.get("a")).toBeUndefined();
  });

  it("notifies and unsubscribes listeners", () => {
    const health = new HealthStatus();
    const seen: ServingStatus[] = [];

    const unsubscribe = health.subscribe("a", (status) => seen.push(status));
    health.set("a", ServingStatus.SERVING);
    health.set("b", ServingStatus.SERVING);
    expect(health.subscriberCount).toBe(1);
    unsubscribe();
    health.set("a", ServingStatus.NOT_SERVING);

    expect(seen).toEqual([ServingStatus.SERVING]);
    expect(health.subscriberCount).toBe(0);
  });

  it("shutdown marks all NOT_SERVING and freezes", () => {
    const health = new HealthStatus();
    health.set("a", ServingStatus.SERVING);

    health.shutdown();
    health.set("a", ServingStatus.SERVING);

    expect(health.get("")).toBe(ServingStatus.NOT_SERVING);
    expect(health.get("a")).toBe(ServingStatus.NOT_SERVING);
  });
});

describe("health service", () => {
  let server: TestServer;
  let health: HealthStatus;
  let client: ReturnType<typeof createClient<typeof Health>>;

  beforeEach(async () => {
    health = new HealthStatus();
    health.set("engram.v1.StorageService", ServingStatus.SERVING);
    server = await startServer((router) => registerHealth(router, health));
    // Connect-Node 2.x has no httpVersion option here, because its gRPC transport always uses HTTP/2.
    const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${server.port}` });
    client = createClient(Health, transport);
  });

  afterEach(async () => {
    await server?.close();
  });

  it("Check returns the status", async () => {
    const whole = await client.check({ service: "" });
    const storage = await client.check({ service: "engram.v1.StorageService" });

    expect(whole.status).toBe(ServingStatus.SERVING);
    expect(storage.status).toBe(ServingStatus.SERVING);
  });

  it("Check follows set", async () => {
    health.set("engram.v1.StorageService", ServingStatus.NOT_SERVING);

    const response = await client.check({ service: "engram.v1.StorageService" });

    expect(response.status).toBe(ServingStatus.NOT_SERVING);
  });

  it("Check unknown service is NOT_FOUND", async () => {
    const error = await client.check({ service: "no.such.Service" }).catch((reason: unknown) => reason);

    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.NotFound);
    expect((error as ConnectError).rawMessage).toContain("no.such.Service");
  });

  it("Watch sends changes until cancel", async () => {
    const controller = new AbortController();
    const updates = client
      .watch({ service: "engram.v1.StorageService" }, { signal: controller.signal })
      [Symbol.asyncIterator]();

    const first = await updates.next();
    expect(first.value?.status).toBe(ServingStatus.SERVING);
    expect(health.subscriberCount).toBe(1);

    health.set("engram.v1.StorageService", ServingStatus.NOT_SERVING);
    const second = await updates.next();
    expect(second.value?.status).toBe(ServingStatus.NOT_SERVING);

    controller.abort();
    const error = await updates.next().catch((reason: unknown) => reason);
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.Canceled);

    // The server handles the cancel asynchronously, when the handler signal aborts.
    await vi.waitFor(() => expect(health.subscriberCount).toBe(0));
  });

  it("Watch skips a repeated status", async () => {
    const controller = new AbortController();
    const updates = client
      .watch({ service: "engram.v1.StorageService" }, { signal: controller.signal })
      [Symbol.asyncIterator]();

    await updates.next();
    health.set("engram.v1.StorageService", ServingStatus.SERVING);
    health.set("engram.v1.StorageService", ServingStatus.UNKNOWN);
    const next = await updates.next();

    expect(next.value?.status).toBe(ServingStatus.UNKNOWN);
    controller.abort();
    await updates.next().catch(() => undefined);
    await vi.waitFor(() => expect(health.subscriberCount).toBe(0));
  });

  it("Watch unknown service starts SERVICE_UNKNOWN", async () => {
    const controller = new AbortController();
    const updates = client
      .watch({ service: "engram.v1.Later" }, { signal: controller.signal })
      [Symbol.asyncIterator]();

    const first = await updates.next();
    expect(first.value?.status).toBe(ServingStatus.SERVICE_UNKNOWN);

    health.set("engram.v1.Later", ServingStatus.SERVING);
    const second = await updates.next();
    expect(second.value?.status).toBe(ServingStatus.SERVING);

    controller.abort();
    await updates.next().catch(() => undefined);
    await vi.waitFor(() => expect(health.subscriberCount).toBe(0));
  });

  it("shutdown reaches open watchers", async () => {
    const controller = new AbortController();
    const updates = client.watch({ service: "" }, { signal: controller.signal })[Symbol.asyncIterator]();
    await updates.next();

    health.shutdown();
    const next = await updates.next();
    const check = await client.check({ service: "engram.v1.StorageService" });

    expect(next.value?.status).toBe(ServingStatus.NOT_SERVING);
    expect(check.status).toBe(ServingStatus.NOT_SERVING);
    controller.abort();
    await updates.next().catch(() => undefined);
    await vi.waitFor(() => expect(health.subscriberCount).toBe(0));
  });

  it("Watch ends cleanly when server closes", async () => {
    const updates = client.watch({ service: "" })[Symbol.asyncIterator]();
    await updates.next();

    await server.close();

    await vi.waitFor(() => expect(health.subscriberCount).toBe(0));
    await updates.next().catch(() => undefined);
  });
});
