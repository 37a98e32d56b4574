/**
 * The standard gRPC health checking service (grpc.health.v1.Health), which
 * Connect-ES does not ship. Load balancers and Kubernetes gRPC probes call it.
 */
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";

import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../gen/grpc/health/v1/health_pb.js";

export { ServingStatus };

/** Callback for status changes of one service name. */
export type HealthListener = (status: ServingStatus) => void;

/**
 * Serving status per service name, where "" is the whole server.
 *
 * A new instance reports "" as SERVING and no other service, as grpc-go's
 * health server does. After `shutdown()`, every service reports NOT_SERVING
 * and `set()` changes nothing, so a component that recovers during a drain
 * cannot report SERVING again.
 */
export class HealthStatus {
  private readonly statuses = new Map<string, ServingStatus>([["", ServingStatus.SERVING]]);
  private readonly listeners = new Map<string, Set<HealthListener>>();
  private shuttingDown = false;

  /**
   * Sets the status of a service and notifies its watchers. Does nothing
   * after `shutdown()`.
   *
   * @throws RangeError for SERVICE_UNKNOWN, which only Watch may send.
   */
  set(service: string, status: ServingStatus): void {
    if (status === ServingStatus.SERVICE_UNKNOWN) {
      throw new RangeError(
        `invalid health status SERVICE_UNKNOWN for service "${service}": use SERVING, NOT_SERVING or UNKNOWN`,
      );
    }
    if (this.shuttingDown) {
      return;
    }
    this.update(service, status);
  }

  /** Returns the status of a service, or undefined if it was never set. */
  get(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  /**
   * Calls `listener` with the new status on every later `set()` of
   * `service` and at `shutdown()`, even when the status did not change,
   * until the returned function is called.
   */
  subscribe(service: string, listener: HealthListener): () => void {
    const set = this.listeners.get(service) ?? new Set<HealthListener>();
    this.listeners.set(service, set);
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.listeners.get(service) === set) {
        this.listeners.delete(service);
      }
    };
  }

  /** Number of active subscriptions over all services, such as open Watch streams. */
  get subscriberCount(): number {
    let count = 0;
    for (const set of this.listeners.values()) {
      count += set.size;
    }
    return count;
  }

  /**
   * Marks every known service NOT_SERVING and ignores later `set()` calls.
   * Call it when the server starts to drain, so clients stop sending calls.
   */
  shutdown(): void {
    this.shuttingDown = true;
    for (const service of [...this.statuses.keys()]) {
      this.update(service, ServingStatus.NOT_SERVING);
    }
  }

  private update(service: string, status: ServingStatus): void {
    this.statuses.set(service, status);
    // Copy first, because a listener may unsubscribe while it runs.
    for (const listener of [...(this.listeners.get(service) ?? [])]) {
      listener(status);
    }
  }
}

/**
 * Registers grpc.health.v1.Health on the router, serving the statuses held
 * by `health`.
 *
 * `Check` fails with NOT_FOUND for a service that has no status. `Watch`
 * sends the current status at once (SERVICE_UNKNOWN for a service that has
 * none), then each change, until the client cancels the call.
 */
export function registerHealth(router: ConnectRouter, health: HealthStatus): void {
  router.service(Health, {
    check(request) {
      const status = health.get(request.service);
      if (status === undefined) {
        throw new ConnectError(
          `service "${request.service}" not found in health status: check the name, or use "" for the whole server`,
          Code.NotFound,
        );
      }
      return { status };
    },

    async *watch(request, context) {
      for await (const status of watchStatus(health, request.service, context.signal)) {
        yield { status };
      }
    },
  });
}

/**
 * Yields the current status of `service`, then each change, until `signal`
 * aborts. As in grpc-go, a slow reader receives only the latest status, and
 * a status equal to the one last sent is skipped.
 */
async function* watchStatus(
  health: HealthStatus,
  service: string,
  signal: AbortSignal,
): AsyncGenerator<ServingStatus> {
  let pending: ServingStatus | undefined = health.get(service) ?? ServingStatus.SERVICE_UNKNOWN;
  let lastSent: ServingStatus | undefined;
  let wake: (() => void) | undefined;

  const unsubscribe = health.subscribe(service, (status) => {
    pending = status;
    wake?.();
  });
  // The generator waits on a promise between changes, where Connect cannot
  // stop it, so the abort has to resolve that promise.
  const onAbort = (): void => wake?.();
  signal.addEventListener("abort", onAbort, { once: true });

  try {
    while (!signal.aborted) {
      if (pending !== undefined && pending !== lastSent) {
        lastSent = pending;
        pending = undefined;
        yield lastSent;
        continue;
      }
      pending = undefined;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
      wake = undefined;
    }
  } finally {
    unsubscribe();
    signal.removeEventListener("abort", onAbort);
  }
}
