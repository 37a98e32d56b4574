import { pino, type Logger } from "pino";

/** Creates the JSON logger; level names are pino's. */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino({ level, base: { service: "engram" }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}
