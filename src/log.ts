import { createRequire } from "node:module";

import { pino, type Logger } from "pino";

export type LogFormat = "json" | "pretty";

/**
 * Creates the logger: JSON lines by default, or colored text through
 * pino-pretty when that format is asked for. Level names are pino's.
 */
export function createLogger(level: string, destination?: pino.DestinationStream, format: LogFormat = "json"): Logger {
  const options: pino.LoggerOptions = { level, base: { service: "engram" }, timestamp: pino.stdTimeFunctions.isoTime };
  if (format === "pretty" && destination === undefined) {
    return pino({ ...options, transport: { target: "pino-pretty", options: { colorize: true } } });
  }
  return pino(options, destination);
}

/** Tells whether pino-pretty can be loaded; it is a development dependency only. */
export function prettyLogsAvailable(): boolean {
  try {
    createRequire(import.meta.url).resolve("pino-pretty");
    return true;
  } catch {
    return false;
  }
}
