import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Bus, connectBus, deleteStreams, listStored } from "@switchboard/bus";
import { buildTextMessageItem, buildWebhookBody, Headers, webhookSignature } from "@switchboard/contracts";
import { createLogger, createMetricsRegistry } from "@switchboard/observability";
import { eventually, testServices, uniqueId } from "@switchboard/testing";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createIngressApp } from "./app";

const appSecret = "test-app-secret";
const verifyToken = "test-verify-token";
const log = createLogger({ service: "ingress-test", level: "silent" });
const decode = (data: Uint8Array) => new TextDecoder().decode(data);

function signedPost(
  app: Parameters<typeof request>[0],
  raw: string,
  signature = webhookSignature(raw, appSecret),
) {
  return request(app)
    .post("/webhooks/facebook")
    .set("Content-Type", "application/json")
    .set("X-Hub-Signature-256", signature)
    .send(raw);
}

describe("ingress webhook", () => {
  let bus: Bus;
  let app: ReturnType<typeof createIngressApp>;

  beforeAll(async () => {
    bus = await connectBus({
      streams: "provision",
      servers: [testServices().natsUrl],
      name: "ingress-test",
      namespace: uniqueId(),
      log,
    });
    app = createIngressApp({
      bus,
      log,
      registry: createMetricsRegistry("ingress"),
      appSecret,
      verifyToken,
      bodyLimit: "64kb",
    });
  });

  afterAll(async () => {
    await deleteStreams(bus.jsm, bus.topology);
    await bus.drain();
  });

  const stored = (subject: string = bus.topology.subjects.webhookEntries) =>
    listStored(bus.js, bus.jsm, bus.topology.streams.webhooks.name, subject);

  it("answers the verification handshake only with the right token", async () => {
    const ok = await request(app)
      .get("/webhooks/facebook")
      .query({ "hub.mode": "subscribe", "hub.verify_token": verifyToken, "hub.challenge": "1158201444" })
      .expect(200);
    expect(ok.text).toBe("1158201444");
    expect(ok.headers["content-type"]).toMatch(/text\/plain/);
    await request(app)
      .get("/webhooks/facebook")
      .query({ "hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1" })
      .expect(403);
    await request(app)
      .get("/webhooks/facebook")
      .query({ "hub.mode": "unsubscribe", "hub.verify_token": verifyToken, "hub.challenge": "1" })
      .expect(403);
  });

  it("stores each entry as its own message on its page's subject, with trace headers, before answering 200", async () => {
    const body = buildWebhookBody([
      { pageId: "2001", messaging: [buildTextMessageItem({ pageId: "2001", psid: "u1", text: "héllo 👋" })] },
      { pageId: "2002", messaging: [buildTextMessageItem({ pageId: "2002", psid: "u2" })] },
    ]);
    const res = await signedPost(app, JSON.stringify(body)).expect(200);
    expect(res.body).toMatchObject({ status: "stored", entries: 2 });
    const [first] = await stored(bus.topology.subjects.webhookEntry("2001"));
    const [second] = await stored(bus.topology.subjects.webhookEntry("2002"));
    expect(JSON.parse(decode(first!.data))).toEqual(body.entry[0]);
    expect(JSON.parse(decode(second!.data)).id).toBe("2002");
    expect(first!.headers[Headers.traceId]).toBe(res.body.traceId);
    expect(Number(first!.headers[Headers.receivedAt])).toBeGreaterThan(0);
  });

  it("deduplicates Meta's retry of the same delivery", async () => {
    const raw = JSON.stringify(
      buildWebhookBody([
        { pageId: "2003", messaging: [buildTextMessageItem({ pageId: "2003", psid: "u3", mid: "m_retry" })] },
      ]),
    );
    await signedPost(app, raw).expect(200);
    await signedPost(app, raw).expect(200);
    expect(await stored(bus.topology.subjects.webhookEntry("2003"))).toHaveLength(1);
  });

  it("verifies the signature over the bytes as sent (escaped unicode, slashes) and keeps long ids exact", async () => {
    const raw =
      '{"object":"page","entry":[{"id":"2004","time":1700000000000,"messaging":[{"sender":{"id":"u4"},"recipient":{"id":"2004"},"timestamp":1700000000000,"message":{"mid":"m_esc","text":"caf\\u00e9 \\ud83d\\ude00 a\\/b","app_id":1234567890123456789}}]}]}';
    await signedPost(app, raw).expect(200);
    const [entry] = await stored(bus.topology.subjects.webhookEntry("2004"));
    const message = JSON.parse(decode(entry!.data)).messaging[0].message;
    expect(message.text).toBe("café 😀 a/b");
    expect(message.app_id).toBe("1234567890123456789");
  });

  it("refuses a wrong or missing signature with 401 and publishes nothing", async () => {
    const raw = JSON.stringify(buildWebhookBody([{ pageId: "2005", messaging: [] }]));
    await signedPost(app, raw, webhookSignature(raw, "another-secret")).expect(401);
    await signedPost(app, raw, "sha1=abc").expect(401);
    await request(app)
      .post("/webhooks/facebook")
      .set("Content-Type", "application/json")
      .send(raw)
      .expect(401);
    // A body whose SHA-256 is wrong is refused even with a valid legacy SHA-1 header.
    await signedPost(app, raw, webhookSignature(`${raw} `, appSecret))
      .set("X-Hub-Signature", "sha1=whatever")
      .expect(401);
    expect(await stored(bus.topology.subjects.webhookEntry("2005"))).toHaveLength(0);
  });

  it("answers 400 for a body that is not JSON and 413 for one over the limit", async () => {
    await signedPost(app, "{not json").expect(400);
    const big = JSON.stringify({ object: "page", entry: [{ id: "2006", padding: "x".repeat(70_000) }] });
    await signedPost(app, big).expect(413);
    expect(await stored(bus.topology.subjects.webhookEntry("2006"))).toHaveLength(0);
  });

  it("keeps a signed body that does not match the schema, with the reason, and answers 200", async () => {
    const raw = JSON.stringify({ object: "page", entry: [{ time: 1 }] });
    await signedPost(app, raw).expect(200);
    const [kept] = await listStored(
      bus.js,
      bus.jsm,
      bus.topology.streams.unrouted.name,
      bus.topology.subjects.unrouted("_invalid"),
    );
    expect(decode(kept!.data)).toBe(raw);
    expect(kept!.reason).toMatch(/invalid webhook body: entry\.0\.id/);
  });

  it("exposes readiness and metrics", async () => {
    await request(app).get("/readyz").expect(200);
    const metrics = await request(app).get("/metrics").expect(200);
    expect(metrics.text).toMatch(
      /switchboard_webhook_entries_received_total\{page_id="2001",service="ingress"\} 1/,
    );
    expect(metrics.text).toMatch(
      /switchboard_webhooks_received_total\{outcome="bad_signature",service="ingress"\} [1-9]/,
    );
  });
});

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function startNats(port: number, dir: string): Promise<ChildProcess> {
  const child = spawn("nats-server", ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir], {
    stdio: "ignore",
  });
  await eventually(
    () =>
      new Promise<boolean>((resolve) => {
        const socket = connect(port, "127.0.0.1");
        socket.on("connect", () => {
          socket.end();
          resolve(true);
        });
        socket.on("error", () => resolve(false));
      }),
    { message: "nats-server to listen" },
  );
  return child;
}

describe("ingress without a broker", () => {
  it("answers 503 so Meta retries, and 200 again once the broker is back", async () => {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), "sb-nats-"));
    let nats = await startNats(port, dir);
    const bus = await connectBus({
      streams: "provision",
      servers: [`nats://127.0.0.1:${port}`],
      name: "ingress-test",
      namespace: uniqueId(),
      log,
    });
    const app = createIngressApp({
      bus,
      log,
      registry: createMetricsRegistry("ingress"),
      appSecret,
      verifyToken,
      publishTimeoutMs: 500,
    });
    const raw = JSON.stringify(
      buildWebhookBody([
        { pageId: "2100", messaging: [buildTextMessageItem({ pageId: "2100", psid: "u" })] },
      ]),
    );
    try {
      nats.kill("SIGTERM");
      await eventually(() => !bus.isConnected(), { message: "client to notice the broker is gone" });
      await signedPost(app, raw).expect(503);
      await request(app).get("/readyz").expect(503);
      nats = await startNats(port, dir);
      await eventually(async () => (await signedPost(app, raw)).status === 200, {
        message: "200 after restart",
      });
      const [entry] = await listStored(bus.js, bus.jsm, bus.topology.streams.webhooks.name);
      expect(JSON.parse(decode(entry!.data)).id).toBe("2100");
    } finally {
      await bus.drain().catch(() => undefined);
      nats.kill("SIGKILL");
    }
  });
});
