import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { Objm } from "@nats-io/obj";
import { type Bus, connectBus, deleteStreams, listStored, replayStored } from "@switchboard/bus";
import {
  buildTextMessageItem,
  buildWebhookBody,
  ENTRY_WITHOUT_PAGE,
  Headers,
  webhookSignature,
} from "@switchboard/contracts";
import { createLogger, createMetricsRegistry } from "@switchboard/observability";
import { eventually, testServices, uniqueId } from "@switchboard/testing";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createIngressApp } from "./app";
import { parseByteSize, signatureProblem } from "./webhook";

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

  it("says which object and platform each entry came from (Sb-Object, Sb-Platform), for Pages and Instagram", async () => {
    const page = buildWebhookBody([
      { pageId: "2101", messaging: [buildTextMessageItem({ pageId: "2101", psid: "u21", mid: "m_p" })] },
    ]);
    const instagram = {
      object: "instagram",
      entry: [
        {
          id: "17841400000000101",
          time: 1569262486134,
          messaging: [
            {
              sender: { id: "1234567890123456" },
              recipient: { id: "17841400000000101" },
              timestamp: 1569262485349,
              message: { mid: "aWdfZAG1faW1", text: "hi from Instagram" },
            },
          ],
        },
      ],
    };
    await signedPost(app, JSON.stringify(page)).expect(200);
    const res = await signedPost(app, JSON.stringify(instagram)).expect(200);
    expect(res.body).toMatchObject({ status: "stored", entries: 1 });
    const [fromPage] = await stored(bus.topology.subjects.webhookEntry("2101"));
    const [fromInstagram] = await stored(bus.topology.subjects.webhookEntry("17841400000000101"));
    expect(fromPage!.headers[Headers.object]).toBe("page");
    expect(fromPage!.headers[Headers.platform]).toBe("messenger");
    expect(fromInstagram!.headers[Headers.object]).toBe("instagram");
    expect(fromInstagram!.headers[Headers.platform]).toBe("instagram");
    expect(JSON.parse(decode(fromInstagram!.data))).toEqual(instagram.entry[0]);
  });

  it("answers app-level objects (user, permissions, application, any other) 200 as ignored: counted, nothing published", async () => {
    const before = (await stored()).length;
    const bodies = [
      { object: "user", entry: [{ id: "3001", time: 1, changes: [{ field: "email", value: "x" }] }] },
      { object: "permissions", entry: [{ id: "3002", time: 1, changes: [{ field: "pages_messaging" }] }] },
      { object: "application", entry: [{ id: "3003", time: 1, changes: [{ field: "plugin_comment" }] }] },
      { object: "something_new", entry: [{ id: "3004", time: 1, changes: [] }] },
    ];
    for (const body of bodies) {
      const res = await signedPost(app, JSON.stringify(body)).expect(200);
      expect(res.body).toMatchObject({ status: "ignored", object: body.object });
    }
    expect(await stored()).toHaveLength(before);
    const unrouted = await listStored(
      bus.js,
      bus.jsm,
      bus.topology.streams.unrouted.name,
      bus.topology.subjects.unroutedAll,
    );
    expect(unrouted.filter((m) => /300[1-4]/.test(decode(m.data)))).toEqual([]);
    const metrics = (await request(app).get("/metrics").expect(200)).text;
    for (const object of ["user", "permissions", "application", "other"]) {
      expect(metrics).toMatch(
        new RegExp(`switchboard_webhook_app_objects_total\\{object="${object}",service="ingress"\\} 1`),
      );
    }
    expect(metrics).toMatch(
      /switchboard_webhooks_received_total\{outcome="app_object",service="ingress"\} 4/,
    );
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

  it("accepts an Instagram webhook signed with the Instagram app's own secret when INSTAGRAM_APP_SECRET is set, and nothing else", async () => {
    const both = createIngressApp({
      bus,
      log,
      registry: createMetricsRegistry("ingress"),
      appSecret,
      instagramAppSecret: "instagram-login-app-secret",
      verifyToken,
      bodyLimit: "64kb",
    });
    const raw = JSON.stringify({
      object: "instagram",
      entry: [
        {
          id: "17841400000002006",
          time: 1,
          messaging: [buildTextMessageItem({ pageId: "17841400000002006", psid: "9" })],
        },
      ],
    });
    await signedPost(both, raw, webhookSignature(raw, "instagram-login-app-secret")).expect(200);
    await signedPost(both, raw, webhookSignature(raw, appSecret)).expect(200);
    await signedPost(both, raw, webhookSignature(raw, "another-secret")).expect(401);
    // Without the setting, the Instagram secret is just another wrong secret.
    const other = JSON.stringify({
      ...JSON.parse(raw),
      entry: [{ id: "17841400000002007", time: 2, messaging: [] }],
    });
    await signedPost(app, other, webhookSignature(other, "instagram-login-app-secret")).expect(401);
    expect(await stored(bus.topology.subjects.webhookEntry("17841400000002006"))).toHaveLength(1);
    expect(await stored(bus.topology.subjects.webhookEntry("17841400000002007"))).toHaveLength(0);
  });

  it("answers 400 for a body that is not JSON and 413 for one over the limit", async () => {
    await signedPost(app, "{not json").expect(400);
    const big = JSON.stringify({ object: "page", entry: [{ id: "2006", padding: "x".repeat(70_000) }] });
    await signedPost(app, big).expect(413);
    expect(await stored(bus.topology.subjects.webhookEntry("2006"))).toHaveLength(0);
  });

  it("keeps a signed body with no entry list whole, with the reason, and answers 200", async () => {
    const raw = JSON.stringify({ object: "page", entry: { id: "2007" } });
    await signedPost(app, raw).expect(200);
    const [kept] = await listStored(
      bus.js,
      bus.jsm,
      bus.topology.streams.unrouted.name,
      bus.topology.subjects.unrouted("_invalid"),
    );
    expect(decode(kept!.data)).toBe(raw);
    expect(kept!.reason).toMatch(/^invalid webhook body: entry /);
  });

  it("stores the valid entries of a body and keeps a malformed one alone, with its reason, as a replayable unrouted entry", async () => {
    const body = buildWebhookBody([
      { pageId: "2201", messaging: [buildTextMessageItem({ pageId: "2201", psid: "u1" })] },
      { pageId: "2202", messaging: [buildTextMessageItem({ pageId: "2202", psid: "u2" })] },
    ]);
    const malformed = { time: 1_700_000_000_000, messaging: [{ recipient: { id: "2203" } }] };
    const raw = JSON.stringify({ ...body, entry: [body.entry[0], malformed, body.entry[1]] });
    const res = await signedPost(app, raw).expect(200);
    expect(res.body).toMatchObject({ status: "stored", entries: 2, kept: 1 });
    expect(await stored(bus.topology.subjects.webhookEntry("2201"))).toHaveLength(1);
    expect(await stored(bus.topology.subjects.webhookEntry("2202"))).toHaveLength(1);

    const unrouted = bus.topology.streams.unrouted.name;
    const [kept, ...more] = await listStored(
      bus.js,
      bus.jsm,
      unrouted,
      bus.topology.subjects.unrouted(ENTRY_WITHOUT_PAGE),
    );
    expect(more).toHaveLength(0);
    // The entry alone, not the body: the other pages' entries are not kept twice.
    expect(JSON.parse(decode(kept!.data))).toEqual(malformed);
    expect(kept!.reason).toMatch(/^undecodable: entry\.1\.id /);
    expect(kept!.headers[Headers.traceId]).toBe(res.body.traceId);
    expect(kept!.headers[Headers.originalSubject]).toBe(
      bus.topology.subjects.webhookEntry(ENTRY_WITHOUT_PAGE),
    );
    expect(
      await listStored(bus.js, bus.jsm, unrouted, bus.topology.subjects.unrouted("_invalid")),
    ).toHaveLength(
      1, // only the whole-body case of the schema test above
    );

    // `pnpm sb unrouted replay` sends it back to the webhook entry subject it is parked for.
    expect(await replayStored(bus.js, bus.jsm, unrouted, [kept!])).toEqual({ replayed: 1, failed: 0 });
    const [replayed] = await stored(bus.topology.subjects.webhookEntry(ENTRY_WITHOUT_PAGE));
    expect(JSON.parse(decode(replayed!.data))).toEqual(malformed);
    expect(replayed!.headers[Headers.traceId]).toBe(res.body.traceId);
    expect(replayed!.headers[Headers.reason]).toBeUndefined();
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

async function startNats(port: number, dir: string, extraConfig = ""): Promise<ChildProcess> {
  // nats-server has no flag for max_payload: every setting goes in a config file.
  const config = join(dir, "nats.conf");
  writeFileSync(
    config,
    `listen: "127.0.0.1:${port}"\njetstream { store_dir: ${JSON.stringify(dir)} }\n${extraConfig}\n`,
  );
  const child = spawn("nats-server", ["-c", config], { stdio: "ignore" });
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

describe("ingress with a broker whose max payload is smaller than a webhook entry", () => {
  it("stores the large entry in the object store, referenced from its stream message, and answers 200", async () => {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), "sb-nats-"));
    const nats = await startNats(port, dir, "max_payload: 65536");
    const bus = await connectBus({
      streams: "provision",
      servers: [`nats://127.0.0.1:${port}`],
      name: "ingress-test",
      namespace: uniqueId(),
      log,
    });
    const registry = createMetricsRegistry("ingress");
    const app = createIngressApp({ bus, log, registry, appSecret, verifyToken, bodyLimit: "5mb" });
    // 100 messages of Messenger's longest text: ~230 kB, well under the body limit, 4× the max payload.
    const messaging = Array.from({ length: 100 }, (_, n) =>
      buildTextMessageItem({ pageId: "2301", psid: "u", mid: `m_big_${n}`, text: "é".repeat(1000) }),
    );
    const body = buildWebhookBody([
      { pageId: "2301", messaging },
      { pageId: "2302", messaging: [buildTextMessageItem({ pageId: "2302", psid: "u" })] },
    ]);
    const raw = JSON.stringify(body);
    try {
      expect(bus.nc.info?.max_payload).toBe(65536);
      const res = await signedPost(app, raw).expect(200);
      expect(res.body).toMatchObject({ status: "stored", entries: 2 });
      await signedPost(app, raw).expect(200); // Meta's retry: the same object, the message dropped as a repeat

      const [large, ...repeats] = await listStored(
        bus.js,
        bus.jsm,
        bus.topology.streams.webhooks.name,
        bus.topology.subjects.webhookEntry("2301"),
      );
      expect(repeats).toHaveLength(0);
      expect(large!.data.length).toBe(0);
      expect(large!.headers[Headers.traceId]).toBe(res.body.traceId);
      const ref = large!.headers[Headers.entryRef]!;
      const bucket = await new Objm(bus.js).open(bus.topology.buckets.largeEntries);
      expect(JSON.parse(decode((await bucket.getBlob(ref))!))).toEqual(body.entry[0]);

      const [small] = await listStored(
        bus.js,
        bus.jsm,
        bus.topology.streams.webhooks.name,
        bus.topology.subjects.webhookEntry("2302"),
      );
      expect(JSON.parse(decode(small!.data))).toEqual(body.entry[1]);
      expect(small!.headers[Headers.entryRef]).toBeUndefined();

      const metrics = await request(app).get("/metrics").expect(200);
      expect(metrics.text).toMatch(/switchboard_ingress_large_entries_total\{service="ingress"\} 2/);
      expect(metrics.text).not.toMatch(/outcome="broker_unavailable"/);
    } finally {
      await bus.drain().catch(() => undefined);
      nats.kill("SIGKILL");
    }
  });
});

describe("rejected signatures", () => {
  const raw = Buffer.from('{"object":"page","entry":[]}');
  const good = webhookSignature(raw, appSecret);

  it("names the reason: no header, wrong prefix, wrong length, digest mismatch", () => {
    expect(signatureProblem(raw, good, appSecret)).toBeUndefined();
    expect(signatureProblem(raw, undefined, appSecret)).toBe("missing");
    expect(signatureProblem(raw, "", appSecret)).toBe("missing");
    expect(signatureProblem(raw, `sha1=${good.slice(7)}`, appSecret)).toBe("wrong_prefix");
    expect(signatureProblem(raw, good.slice(0, -2), appSecret)).toBe("wrong_length");
    expect(signatureProblem(raw, `${good.slice(0, -1)}z`, appSecret)).toBe("wrong_length");
    expect(signatureProblem(raw, webhookSignature(raw, "another-secret"), appSecret)).toBe("digest_mismatch");
  });

  it("logs each reason at most once per 10 s with the count suppressed, never the body or the secret", async () => {
    const lines: Array<Record<string, unknown>> = [];
    const destination = new Writable({
      write(chunk, _enc, done) {
        for (const line of chunk.toString().split("\n").filter(Boolean)) lines.push(JSON.parse(line));
        done();
      },
    });
    const captured = createLogger({ service: "ingress-test", level: "info", destination });
    const bus = await connectBus({
      servers: [testServices().natsUrl],
      name: "ingress-test",
      namespace: uniqueId(),
      log,
      streams: "none",
    });
    const app = createIngressApp({
      bus,
      log: captured,
      registry: createMetricsRegistry("ingress"),
      appSecret,
      verifyToken,
    });
    const body = '{"object":"page","entry":[{"id":"2401","secret_marker":"body-must-not-be-logged"}]}';
    vi.useFakeTimers({ toFake: ["Date"] });
    try {
      for (let n = 0; n < 3; n++)
        await signedPost(app, body, webhookSignature(body, "wrong-secret")).expect(401);
      await signedPost(app, body, "sha1=abc").expect(401);
      const rejected = () => lines.filter((l) => l.msg === "webhook signature rejected");
      expect(rejected().map((l) => [l.reason, l.suppressed])).toEqual([
        ["digest_mismatch", 0],
        ["wrong_prefix", 0],
      ]);
      expect(rejected()[0]!.hint).toMatch(/is FB_APP_SECRET \(or INSTAGRAM_APP_SECRET\) the app's secret\?/);

      vi.setSystemTime(Date.now() + 10_001);
      await signedPost(app, body, webhookSignature(body, "wrong-secret")).expect(401);
      expect(rejected().at(-1)).toMatchObject({ reason: "digest_mismatch", suppressed: 2 });

      const text = JSON.stringify(lines);
      expect(text).not.toContain("body-must-not-be-logged");
      expect(text).not.toContain(appSecret);
      expect(text).not.toContain(webhookSignature(body, "wrong-secret").slice(7));
    } finally {
      vi.useRealTimers();
      await bus.drain();
    }
  });
});

describe("WEBHOOK_BODY_LIMIT sizes", () => {
  it("reads the forms the setting takes, and refuses anything else", () => {
    expect(parseByteSize("5mb")).toBe(5 * 1024 * 1024);
    expect(parseByteSize("64kb")).toBe(65_536);
    expect(parseByteSize("1024")).toBe(1024);
    expect(parseByteSize("1.5 MB")).toBe(1_572_864);
    expect(() => parseByteSize("lots")).toThrow(/not a size: lots/);
  });
});
