/*
 * One TCP port for every protocol. A connection that opens with the HTTP/2
 * preface ("PRI * HTTP/2.0") goes to an HTTP/2 server, which serves gRPC,
 * and Connect or gRPC-Web over h2c. Any other connection goes to an
 * HTTP/1.1 server, for Connect and gRPC-Web from browsers and curl. Node's
 * cleartext HTTP/2 server cannot serve HTTP/1.1 itself, hence the dispatch
 * on the first bytes.
 */
import http from "node:http";
import http2 from "node:http2";
import net, { type AddressInfo, type Socket } from "node:net";

export type RequestHandler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => void;

/**
 * HTTP/2 flow-control window for streams and connections. The default of
 * 64 KiB halves streaming throughput; raising both windows on the receiving
 * side matters, 16 MiB performed the same as 64 MiB.
 */
const HTTP2_WINDOW_BYTES = 16 * 1024 * 1024;

export class ApiServer {
  private readonly tcp: net.Server;
  private readonly h1: http.Server;
  private readonly h2: http2.Http2Server;
  private readonly sockets = new Set<Socket>();
  private readonly sessions = new Set<http2.ServerHttp2Session>();

  constructor(handler: RequestHandler) {
    this.h1 = http.createServer(handler);
    this.h2 = http2.createServer(
      {
        settings: { initialWindowSize: HTTP2_WINDOW_BYTES },
        // In megabytes. A client may fill the whole connection window before
        // the server reads; the default of 10 would then reset the session.
        maxSessionMemory: (4 * HTTP2_WINDOW_BYTES) / (1024 * 1024),
      },
      handler,
    );
    this.h2.on("session", (session) => {
      session.setLocalWindowSize(HTTP2_WINDOW_BYTES);
      this.sessions.add(session);
      session.once("close", () => this.sessions.delete(session));
    });

    this.tcp = net.createServer((socket) => this.dispatch(socket));
  }

  /** Starts listening; port 0 picks a free port. */
  async listen(port: number, host: string): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.tcp.once("error", reject);
      this.tcp.listen(port, host, () => {
        this.tcp.off("error", reject);
        resolve();
      });
    });
    return this.tcp.address() as AddressInfo;
  }

  /**
   * Stops accepting connections, lets open calls finish for up to
   * `graceMs`, then closes every connection that is still open.
   */
  async close(graceMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => this.tcp.close(() => resolve()));
    this.h1.close();
    this.h1.closeIdleConnections();
    this.h2.close();
    // A closing session sends GOAWAY: open streams finish, new ones are refused.
    for (const session of this.sessions) session.close();

    const deadline = setTimeout(() => {
      for (const socket of this.sockets) socket.destroy();
    }, graceMs);
    await closed;
    clearTimeout(deadline);
  }

  private dispatch(socket: Socket): void {
    this.sockets.add(socket);
    socket.once("close", () => this.sockets.delete(socket));
    socket.on("error", () => socket.destroy());

    socket.once("data", (head: Buffer) => {
      socket.pause();
      socket.unshift(head);
      if (head.subarray(0, 3).toString("latin1") === "PRI") {
        // The HTTP/2 session reads the bytes put back with unshift itself.
        this.h2.emit("connection", socket);
      } else {
        this.h1.emit("connection", socket);
        socket.resume();
      }
    });
  }
}
