import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { type Bus, connectBus, deleteStreams, publishJson } from "@switchboard/bus";
import { type DomainEvent, domainEventId, type PageLifecycleEvent } from "@switchboard/contracts";
import { createTokenCipher, generateTokenKey } from "@switchboard/crypto";
import { applyMigrations, createDb, type Db } from "@switchboard/db";
import { createLogger, createMetricsRegistry } from "@switchboard/observability";
import {
  createTestDatabase,
  eventually,
  type TestDatabase,
  testServices,
  uniqueId,
} from "@switchboard/testing";
import { createEndpoint, listDeliveries, rotateEndpointSecret, updateEndpoint } from "@switchboard/webhooks";
import { Webhook } from "standardwebhooks";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Dispatcher, type DispatcherSettings, startDispatcher } from "./dispatcher";
import { createDispatcherMetrics } from "./metrics";

const log = createLogger({
  service: "dispatcher-test",
  level: (process.env.TEST_LOG_LEVEL ?? "silent") as "silent",
});
const cipher = createTokenCipher(generateTokenKey("k1"));
const policy = { allowPrivateTargets: true };

interface Received {
  headers: IncomingMessage["headers"];
  body: string;
  at: number;
}

/** A real HTTP receiver; `answer` decides each response (status, or a promise that never resolves). */
async function startReceiver() {
  const received: Received[] = [];
  let answer: (request: Received, index: number) => number | Promise<number> = () => 200;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", async () => {
      const request = { headers: req.headers, body: Buffer.concat(chunks).toString("utf8"), at: Date.now() };
      received.push(request);
      const status = await answer(request, received.length - 1);
      res.writeHead(status).end(status < 300 ? "ok" : "nope");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`,
    received,
    answerWith(fn: typeof answer) {
      answer = fn;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
type Receiver = Awaited<ReturnType<typeof startReceiver>>;

const settings = (overrides: Partial<DispatcherSettings> = {}): DispatcherSettings => ({
  schedule: [150, 300, 300, 300, 300],
  timeoutMs: 2000,
  disableAfterMs: 86_400_000,
  maxInFlight: 16,
  endpointConcurrency: 4,
  circuitThreshold: 50,
  circuitOpenMs: 1000,
  pollIntervalMs: 50,
  retentionMs: 86_400_000,
  fanOutConcurrency: 8,
  housekeepingIntervalMs: 60_000,
  ...overrides,
});

const PAGE_A = "7300000000000001";
const PAGE_B = "7300000000000002";

describe("webhook-dispatcher", () => {
  let database: TestDatabase;
  let db: Db;
  let bus: Bus;
  const dispatchers: Dispatcher[] = [];
  const receivers: Receiver[] = [];
  let occurred = Date.now();

  beforeAll(async () => {
    database = await createTestDatabase(applyMigrations);
    db = createDb(database.url, { poolSize: 8 });
    bus = await connectBus({
      streams: "provision",
      servers: [testServices().natsUrl],
      name: "dispatcher-test",
      namespace: uniqueId("wh"),
      log,
    });
    for (const [pageId, companyId] of [
      [PAGE_A, "company-a"],
      [PAGE_B, "company-b"],
    ] as const) {
      await db.pageConnection.create({
        data: { pageId, companyId, name: `Page ${pageId}`, pageAccessTokenEnc: "unused" },
      });
    }
  });

  afterEach(async () => {
    // Receivers first: an attempt hanging on one ends (connection closed) instead of holding up stop().
    await Promise.all(receivers.splice(0).map((r) => r.close()));
    await Promise.all(dispatchers.splice(0).map((d) => d.stop()));
    await db.webhookEndpoint.deleteMany({});
  });

  afterAll(async () => {
    await deleteStreams(bus.jsm, bus.topology).catch(() => undefined);
    await bus?.drain();
    await db?.$disconnect();
    await database?.drop();
  });

  const start = async (overrides: Partial<DispatcherSettings> = {}) => {
    const dispatcher = await startDispatcher({
      bus,
      db,
      cipher,
      log,
      metrics: createDispatcherMetrics(createMetricsRegistry("dispatcher-test")),
      policy,
      settings: settings(overrides),
    });
    dispatchers.push(dispatcher);
    return dispatcher;
  };
  const receiver = async () => {
    const r = await startReceiver();
    receivers.push(r);
    return r;
  };

  const messageCreated = (pageId: string, psid: string, n: number): DomainEvent => ({
    type: "message.created",
    platform: "messenger",
    messageId: uniqueId("m"),
    conversationId: `${pageId}:${psid}`,
    pageId,
    psid,
    mid: `m_${n}_${uniqueId()}`,
    direction: "incoming",
    kind: "text",
    sentAt: occurred,
    occurredAt: ++occurred,
  });
  const publish = (event: DomainEvent) =>
    publishJson(bus.js, bus.topology.subjects.domainEvent(event.type, event.pageId), event, {
      msgId: domainEventId(event),
    });
  const dataOf = (r: Received) => JSON.parse(r.body).data as DomainEvent & { mid: string };

  it("delivers an event to its company's endpoint once, signed (Standard Webhooks), and never to another company's", async () => {
    const mine = await receiver();
    const theirs = await receiver();
    const endpoint = await createEndpoint({ db, cipher, policy }, "company-a", { url: mine.url });
    await createEndpoint({ db, cipher, policy }, "company-b", { url: theirs.url });
    await start();
    const event = messageCreated(PAGE_A, "9100000000000001", 1);
    await publish(event);
    await publish(event); // republished (outbox relay and handler both): still one delivery

    await eventually(() => expect(mine.received).toHaveLength(1));
    const [delivery] = mine.received;
    const verified = new Webhook(endpoint.secret).verify(delivery!.body, {
      "webhook-id": String(delivery!.headers["webhook-id"]),
      "webhook-timestamp": String(delivery!.headers["webhook-timestamp"]),
      "webhook-signature": String(delivery!.headers["webhook-signature"]),
    }) as { type: string; timestamp: string; data: DomainEvent };
    expect(verified.type).toBe("message.created");
    expect(verified.data).toEqual(event);
    expect(verified.timestamp).toBe(new Date(event.occurredAt).toISOString());
    expect(delivery!.headers["content-type"]).toMatch(/application\/json/);
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(mine.received).toHaveLength(1);
    expect(theirs.received).toHaveLength(0);
  });

  it("retries a failing receiver with the same webhook-id until it answers 2xx, and logs every attempt", async () => {
    const r = await receiver();
    r.answerWith((_request, index) => (index < 2 ? 500 : 200));
    const endpoint = await createEndpoint({ db, cipher, policy }, "company-a", { url: r.url });
    await start();
    await publish(messageCreated(PAGE_A, "9100000000000002", 1));

    await eventually(() => expect(r.received).toHaveLength(3));
    const ids = new Set(r.received.map((request) => request.headers["webhook-id"]));
    expect(ids.size).toBe(1);
    // Each attempt is signed afresh: every one verifies.
    for (const request of r.received) {
      expect(() =>
        new Webhook(endpoint.secret).verify(request.body, request.headers as Record<string, string>),
      ).not.toThrow();
    }
    await eventually(async () => {
      const log = await listDeliveries(db, "company-a", endpoint.id, { limit: 10 });
      expect(log?.data).toHaveLength(1);
      expect(log?.data[0]?.status).toBe("delivered");
      expect(log?.data[0]?.attempts.map((a) => a.statusCode)).toEqual([500, 500, 200]);
      expect(log?.data[0]?.attempts[0]?.nextAttemptAt).not.toBeNull();
      return true;
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(r.received).toHaveLength(3);
  });

  it("keeps one conversation in order while its first event is retried, without holding up another conversation", async () => {
    const r = await receiver();
    const slowPsid = "9100000000000003";
    const otherPsid = "9100000000000004";
    const conversation = [1, 2, 3, 4, 5].map((n) => messageCreated(PAGE_A, slowPsid, n));
    const mids = conversation.map((event) => (event as { mid: string }).mid);
    const failed = new Set<number>(); // requests answered 503
    r.answerWith((request, index) => {
      if (dataOf(request).mid === mids[0] && failed.size < 2) {
        failed.add(index);
        return 503;
      }
      return 200;
    });
    await createEndpoint({ db, cipher, policy }, "company-a", { url: r.url });
    await start({ schedule: [400, 400, 400] });
    for (const event of conversation) await publish(event);
    await publish(messageCreated(PAGE_A, otherPsid, 1));

    // Two failed attempts, five deliveries of the slow conversation, one of the other.
    await eventually(() => expect(r.received).toHaveLength(8));
    const delivered = r.received.filter((_, index) => !failed.has(index));
    expect(delivered.filter((q) => dataOf(q).psid === slowPsid).map((q) => dataOf(q).mid)).toEqual(mids);
    const otherAt = delivered.find((q) => dataOf(q).psid === otherPsid)!.at;
    const firstAt = delivered.find((q) => dataOf(q).psid === slowPsid)!.at;
    expect(otherAt).toBeLessThan(firstAt);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(r.received).toHaveLength(8);
  });

  it("signs with both secrets during a rotation's overlap", async () => {
    const r = await receiver();
    const endpoint = await createEndpoint({ db, cipher, policy }, "company-a", { url: r.url });
    const rotated = await rotateEndpointSecret({ db, cipher }, "company-a", endpoint.id);
    expect(rotated?.secret).toMatch(/^whsec_/);
    await start();
    await publish(messageCreated(PAGE_A, "9100000000000005", 1));
    await eventually(() => expect(r.received).toHaveLength(1));
    const request = r.received[0]!;
    const headers = request.headers as Record<string, string>;
    expect(headers["webhook-signature"]!.split(" ")).toHaveLength(2);
    expect(() => new Webhook(endpoint.secret).verify(request.body, headers)).not.toThrow();
    expect(() => new Webhook(rotated!.secret).verify(request.body, headers)).not.toThrow();
    expect(() =>
      new Webhook(`whsec_${Buffer.alloc(24, 7).toString("base64")}`).verify(request.body, headers),
    ).toThrow();
  });

  it("delivers what a replica claimed and could not finish, after its lease runs out (at least once)", async () => {
    const r = await receiver();
    let hang = true;
    r.answerWith(() => (hang ? new Promise<number>(() => undefined) : 200));
    await createEndpoint({ db, cipher, policy }, "company-a", { url: r.url });
    // Replica one claims the delivery and hangs on the receiver; it is stopped from outside (as a crash
    // would) only after a second replica is running. Its lease (timeout + 10 s) is cut short in SQL.
    const one = await start({ timeoutMs: 60_000 });
    await publish(messageCreated(PAGE_A, "9100000000000006", 1));
    await eventually(() => expect(r.received).toHaveLength(1));
    hang = false;
    await start();
    await db.$executeRaw`UPDATE webhook_deliveries SET locked_until = now() - interval '1 second'`;
    await eventually(() => expect(r.received.length).toBeGreaterThanOrEqual(2));
    expect(new Set(r.received.map((q) => q.headers["webhook-id"])).size).toBe(1);
    void one;
  });

  it("disables an endpoint failing for WEBHOOK_DISABLE_AFTER, with a reason and a webhook_endpoint.disabled event in the outbox", async () => {
    const r = await receiver();
    r.answerWith(() => 500);
    const endpoint = await createEndpoint({ db, cipher, policy }, "company-a", { url: r.url });
    await start({ disableAfterMs: 300, schedule: [100, 100, 100, 100, 100, 100, 100, 100] });
    await publish(messageCreated(PAGE_A, "9100000000000007", 1));
    await eventually(async () => {
      const row = await db.webhookEndpoint.findUniqueOrThrow({ where: { id: endpoint.id } });
      expect(row.enabled).toBe(false);
      expect(row.disabledReason).toMatch(/every delivery failed since .*HTTP 500/);
      return true;
    });
    const outbox = await db.domainEventOutbox.findMany({});
    const disabled = outbox.find(
      (row) => (row.payload as { type: string }).type === "webhook_endpoint.disabled",
    );
    expect(disabled?.payload).toMatchObject({ endpointId: endpoint.id, companyId: "company-a" });
    expect(disabled?.subject).toBe(
      bus.topology.subjects.domainEvent("webhook_endpoint.disabled", "company-a"),
    );
    // Disabled: nothing more is attempted, until the company enables it again.
    const attempts = r.received.length;
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(r.received.length).toBe(attempts);
    r.answerWith(() => 200);
    await updateEndpoint({ db, policy }, "company-a", endpoint.id, { enabled: true });
    await eventually(() => expect(r.received.length).toBe(attempts + 1));
  });

  it("delivers only the event types an endpoint asked for, page status changes included", async () => {
    const r = await receiver();
    await createEndpoint({ db, cipher, policy }, "company-a", {
      url: r.url,
      events: ["page.status_changed"],
    });
    await start();
    await publish(messageCreated(PAGE_A, "9100000000000008", 1));
    const status: PageLifecycleEvent = {
      type: "page.status_changed",
      pageId: PAGE_A,
      companyId: "company-a",
      platform: "messenger",
      status: "reauthorization_required",
      reason: "token expired",
      occurredAt: Date.now(),
    };
    await publishJson(bus.js, bus.topology.subjects.pageLifecycle(status.type, status.pageId), status, {
      msgId: `${status.type}:${status.pageId}:${status.occurredAt}`,
    });
    await eventually(() => expect(r.received).toHaveLength(1));
    expect(JSON.parse(r.received[0]!.body)).toMatchObject({ type: "page.status_changed", data: status });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(r.received).toHaveLength(1);
  });
});
