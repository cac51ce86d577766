import { createHash, randomUUID } from "node:crypto";
import { type Bus, connectBus, deleteStreams, listStored, publishRaw } from "@switchboard/bus";
import {
  buildEchoItem,
  buildTextMessageItem,
  Headers,
  type MessagingEvent,
  PageLifecycleEvent,
} from "@switchboard/contracts";
import { createTokenCipher, generateTokenKey } from "@switchboard/crypto";
import { applyMigrations, createDb, type Db } from "@switchboard/db";
import { createFakeMeta, type FakeMeta, type RunningFakeMeta } from "@switchboard/fake-meta";
import { createLogger, createMetricsRegistry } from "@switchboard/observability";
import { connectPage, disconnectPage } from "@switchboard/pages";
import {
  createTestDatabase,
  eventually,
  type TestDatabase,
  testServices,
  uniqueId,
} from "@switchboard/testing";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPageRouterMetrics } from "./metrics";
import { type RunningPageRouter, startPageRouter } from "./router";

const APP_SECRET = "router-test-app-secret";
const cipher = createTokenCipher(generateTokenKey("k1"));
const log = createLogger({ service: "page-router-test", level: "silent" });
const decoder = new TextDecoder();

describe("page-router", () => {
  let database: TestDatabase;
  let db: Db;
  let bus: Bus;
  let redis: Redis;
  let meta: FakeMeta;
  let metaServer: RunningFakeMeta;
  let keyPrefix: string;
  const replicas: RunningPageRouter[] = [];
  const busTraffic: string[] = [];
  const tokens = new Set<string>();

  const startReplica = async () => {
    const registry = createMetricsRegistry("page-router");
    const replica = await startPageRouter({
      bus,
      db,
      redis,
      cipher,
      log,
      metrics: createPageRouterMetrics(registry),
      settings: {
        concurrency: 8,
        pageCacheTtlMs: 60_000,
        unroutedSweepIntervalMs: 1_000,
        graph: { baseUrl: metaServer.url, version: "v21.0", appSecret: APP_SECRET },
        keyPrefix,
        staleAfterMs: 60_000,
        unavailableTtlMs: 60_000,
        timeoutMs: 2_000,
        callsPerPage: 100,
        callsWindowMs: 10_000,
        usageBackoffPercent: 90,
        backoffMs: 60_000,
      },
    });
    replicas.push(replica);
    return { replica, registry };
  };

  beforeAll(async () => {
    database = await createTestDatabase(applyMigrations);
    db = createDb(database.url);
    bus = await connectBus({
      servers: [testServices().natsUrl],
      name: "page-router-test",
      namespace: uniqueId(),
      log,
    });
    keyPrefix = `${uniqueId()}:`;
    redis = new Redis(testServices().redisUrl);
    meta = createFakeMeta({
      appSecret: APP_SECRET,
      appId: "100000000000001",
      ingressUrl: "http://127.0.0.1:9",
    });
    metaServer = await meta.listen(0);
    // Everything on this NATS connection's server, to prove no token ever rides the bus.
    bus.nc.subscribe(">", {
      callback: (_err, msg) => {
        busTraffic.push(decoder.decode(msg.data));
      },
    });
    await startReplica();
  });

  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    await deleteStreams(bus.jsm, bus.topology);
    await bus.drain();
    await redis.quit();
    await metaServer.close();
    await db.$disconnect();
    await database.drop();
  });

  /** Connects a page in Switchboard and at the fake Meta, with its own token. */
  const connect = async (pageId: string, companyId = "acme") => {
    const token = `EAAB-${pageId}-${randomUUID()}`;
    tokens.add(token);
    meta.state.addPage({ pageId, token });
    await connectPage({ db, bus, cipher }, { pageId, name: `Page ${pageId}`, companyId, token });
    return token;
  };

  /** Publishes an entry exactly as the ingress does. */
  const publishEntry = async (entry: Record<string, unknown>, traceId = randomUUID()) => {
    const data = JSON.stringify(entry);
    await publishRaw(bus.js, bus.topology.subjects.webhookEntry(String(entry.id)), data, {
      msgId: createHash("sha256").update(data).digest("base64url"),
      headers: { [Headers.traceId]: traceId, [Headers.receivedAt]: Date.now() },
    });
    return traceId;
  };

  const eventsOf = async (pageId: string) =>
    (
      await listStored(
        bus.js,
        bus.jsm,
        bus.topology.streams.events.name,
        bus.topology.subjects.messagingEvent(pageId),
      )
    ).map((m) => JSON.parse(decoder.decode(m.data)) as MessagingEvent);

  const waitForEvents = (pageId: string, count: number) =>
    eventually(
      async () => {
        const events = await eventsOf(pageId);
        return events.length >= count && events;
      },
      { message: `${count} events for page ${pageId}` },
    );

  it("routes a text message to a typed event with the sender's profile", async () => {
    await connect("1001", "acme");
    meta.state.addUser({ pageId: "1001", psid: "5001", firstName: "Ada", lastName: "Lovelace" });
    const item = buildTextMessageItem({ pageId: "1001", psid: "5001", text: "hi", mid: "m_text_1" });
    const traceId = await publishEntry({ id: "1001", time: Date.now(), messaging: [item] });
    const [event] = await waitForEvents("1001", 1);
    expect(event).toMatchObject({
      kind: "message",
      eventId: "1001:message:m_text_1",
      pageId: "1001",
      companyId: "acme",
      psid: "5001",
      conversationKey: "1001:5001",
      timestamp: item.timestamp,
      traceId,
      mid: "m_text_1",
      text: "hi",
      profileStatus: "fetched",
      profile: { firstName: "Ada", lastName: "Lovelace" },
    });
  });
});
