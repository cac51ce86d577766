import { createServer } from "node:net";
import { Writable } from "node:stream";
import { testServices } from "@switchboard/testing";
import { Redis } from "ioredis";
import request from "supertest";
import { describe, expect, it } from "vitest";
import { createLogger, createMetricsRegistry, createOpsApp, redisReadiness } from "./index";

describe("ops endpoints", () => {
  it("reports readiness per check and exposes metrics", async () => {
    let brokerUp = false;
    const registry = createMetricsRegistry("test");
    const app = createOpsApp({
      registry,
      checks: [
        { name: "broker", check: () => brokerUp },
        { name: "db", check: async () => true },
      ],
    });
    await request(app).get("/healthz").expect(200);
    const down = await request(app).get("/readyz").expect(503);
    expect(down.body.checks).toContainEqual({ name: "broker", ok: false });
    brokerUp = true;
    await request(app).get("/readyz").expect(200);
    const metrics = await request(app).get("/metrics").expect(200);
    expect(metrics.text).toContain("switchboard_process_cpu_seconds_total");
  });
});

describe("logger", () => {
  it("redacts tokens wherever they sit", () => {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const log = createLogger({ service: "test", destination });
    log.info({ pageId: "1", token: "EAAB-secret-1", page: { accessToken: "EAAB-secret-2" } }, "connected");
    expect(lines.join("")).not.toContain("EAAB-secret");
    expect(JSON.parse(lines[0]!)).toMatchObject({ pageId: "1", service: "test", level: "info" });
  });
});

describe("redis readiness", () => {
  /** A port on which nothing listens (taken, then released). */
  const deadPort = () =>
    new Promise<number>((resolve) => {
      const server = createServer();
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as { port: number };
        server.close(() => resolve(port));
      });
    });

  it("says not ready, quickly, while Redis is unreachable; /healthz still says the process runs", async () => {
    // As the page-router configures its client: retries forever in the background.
    const redis = new Redis(`redis://127.0.0.1:${await deadPort()}`, {
      maxRetriesPerRequest: 1,
      commandTimeout: 1000,
    });
    redis.on("error", () => undefined);
    const app = createOpsApp({ registry: createMetricsRegistry("test"), checks: [redisReadiness(redis)] });
    try {
      const started = Date.now();
      const res = await request(app).get("/readyz").expect(503);
      expect(Date.now() - started).toBeLessThan(1000);
      expect(res.body.checks).toEqual([{ name: "redis", ok: false }]);
      await request(app).get("/healthz").expect(200);
    } finally {
      redis.disconnect();
    }
  });

  it("says ready once PING is answered, and reuses the answer for a second", async () => {
    const redis = new Redis(testServices().redisUrl);
    const check = redisReadiness(redis, { cacheMs: 1000 });
    try {
      await redis.ping();
      expect(await check.check()).toBe(true);
      redis.disconnect();
      expect(await check.check()).toBe(true); // cached
      await new Promise((r) => setTimeout(r, 1100));
      expect(await check.check()).toBe(false);
    } finally {
      redis.disconnect();
    }
  });
});
