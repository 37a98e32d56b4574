/*
 * The operations port (9001 by default): Prometheus metrics at /metrics,
 * liveness at /healthz (the process responds) and readiness at /readyz (the
 * stores respond and the server is not shutting down).
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

import type { Registry } from "prom-client";

import { ServingStatus, type HealthStatus } from "../api/health.js";

export class OpsServer {
  private readonly server: http.Server;

  constructor(registry: Registry, health: HealthStatus) {
    this.server = http.createServer((req, res) => {
      const path = new URL(req.url ?? "/", "http://localhost").pathname;
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { allow: "GET, HEAD" }).end();
        return;
      }
      switch (path) {
        case "/metrics":
          registry.metrics().then(
            (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
            (err: unknown) => res.writeHead(500, { "content-type": "text/plain" }).end(`failed to collect metrics: ${String(err)}\n`),
          );
          return;
        case "/healthz":
          res.writeHead(200, { "content-type": "application/json" }).end('{"status":"alive"}\n');
          return;
        case "/readyz": {
          const ready = health.get("") === ServingStatus.SERVING;
          res.writeHead(ready ? 200 : 503, { "content-type": "application/json" }).end(`{"status":"${ready ? "ready" : "not ready"}"}\n`);
          return;
        }
        default:
          res.writeHead(404, { "content-type": "text/plain" }).end("not found: use /metrics, /healthz or /readyz\n");
      }
    });
  }

  async listen(port: number, host: string): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    return this.server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
