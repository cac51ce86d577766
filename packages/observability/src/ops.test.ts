import { Writable } from "node:stream";
import request from "supertest";
import { describe, expect, it } from "vitest";
import { createLogger, createMetricsRegistry, createOpsApp } from "./index";

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
