import { describe, expect, it } from "vitest";
import { z } from "zod";
import { ConfigError, env, loadConfig, parseDuration } from "./index";

const schema = z.object({
  DATABASE_URL: env.databaseUrl(),
  REDIS_URL: env.redisUrls(),
  FB_APP_SECRET: env.secret(),
  PORT: env.port(3000),
  RECONCILE_INTERVAL: env.duration("10m"),
});

describe("loadConfig", () => {
  it("applies defaults and parses lists and durations", () => {
    const config = loadConfig(schema, {
      FB_APP_SECRET: "s3cr3t-value",
      REDIS_URL: "redis://a:1, redis://b:2",
    });
    expect(config.PORT).toBe(3000);
    expect(config.REDIS_URL).toEqual(["redis://a:1", "redis://b:2"]);
    expect(config.RECONCILE_INTERVAL).toBe(600_000);
    expect(config.DATABASE_URL).toMatch(/^postgresql:\/\//);
  });

  it("names every missing or bad variable", () => {
    try {
      loadConfig(schema, { DATABASE_URL: "mysql://x", PORT: "http", RECONCILE_INTERVAL: "soon" });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      const message = (error as Error).message;
      expect(message).toContain("FB_APP_SECRET is missing");
      expect(message).toContain("DATABASE_URL is invalid");
      expect(message).toContain("PORT is invalid");
      expect(message).toContain("RECONCILE_INTERVAL is invalid");
    }
  });

  it("parses durations", () => {
    expect(parseDuration("30s")).toBe(30_000);
    expect(parseDuration("250ms")).toBe(250);
    expect(parseDuration("1h")).toBe(3_600_000);
    expect(parseDuration("later")).toBeUndefined();
  });
});
