import { describe, expect, it } from "vitest";

import { ConfigError, DEFAULT_BUCKETS, readConfig } from "../src/config.js";

describe("readConfig", () => {
  it("defaults run the embedded store on port 9000", () => {
    const config = readConfig({});
    expect(config.port).toBe(9000);
    expect(config.host).toBe("127.0.0.1");
    expect(config.buckets).toEqual([...DEFAULT_BUCKETS]);
    expect(config.corsOrigins).toEqual([]);
    expect(config.maxObjectBytes).toBe(5 * 1024 ** 4);
    expect(Object.isFrozen(config)).toBe(true);
  });

  it("reads every variable", () => {
    const config = readConfig({
      ENGRAM_HOST: "0.0.0.0",
      ENGRAM_PORT: "9100",
      ENGRAM_DATA_DIR: "/tmp/engram-x",
      ENGRAM_BUCKETS: "alpha, beta-2",
      ENGRAM_CORS_ORIGINS: "https://ui.example.test,http://localhost:5173",
      ENGRAM_LOG_LEVEL: "warn",
      ENGRAM_MAX_OBJECT_BYTES: "1000",
      ENGRAM_MAX_UPLOAD_CHUNK_BYTES: "65536",
      ENGRAM_SHUTDOWN_GRACE_SECONDS: "3",
    });
    expect(config.host).toBe("0.0.0.0");
    expect(config.port).toBe(9100);
    expect(config.dataDir).toBe("/tmp/engram-x");
    expect(config.buckets).toEqual(["alpha", "beta-2"]);
    expect(config.corsOrigins).toEqual(["https://ui.example.test", "http://localhost:5173"]);
    expect(config.logLevel).toBe("warn");
    expect(config.maxObjectBytes).toBe(1000);
    expect(config.maxUploadChunkBytes).toBe(65536);
    expect(config.shutdownGraceMs).toBe(3000);
  });

  it.each([
    ["ENGRAM_PORT", "ninety", /ENGRAM_PORT.*not a whole number/],
    ["ENGRAM_PORT", "70000", /ENGRAM_PORT=70000 is out of range/],
    ["ENGRAM_LOG_LEVEL", "loud", /ENGRAM_LOG_LEVEL.*use one of/],
    ["ENGRAM_BUCKETS", "Bad_Bucket", /ENGRAM_BUCKETS: bucket name "Bad_Bucket" is invalid/],
    ["ENGRAM_MAX_UPLOAD_CHUNK_BYTES", "10", /ENGRAM_MAX_UPLOAD_CHUNK_BYTES=10 is out of range/],
  ])("%s=%s is rejected", (name, value, message) => {
    expect(() => readConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => readConfig({ [name]: value })).toThrow(message);
  });
});
