import { createHash, randomUUID } from "node:crypto";
import { Objm } from "@nats-io/obj";
import { type Bus, connectBus, deleteStreams, listStored, publishRaw } from "@switchboard/bus";
import {
  buildEchoItem,
  buildTextMessageItem,
  ENTRY_WITHOUT_PAGE,
  Headers,
  type MessagingEvent,
  PageLifecycleEvent,
} from "@switchboard/contracts";
import { createTokenCipher, generateTokenKey } from "@switchboard/crypto";
import { applyMigrations, createDb, type Db } from "@switchboard/db";
import { createFakeMeta, type FakeMeta, type RunningFakeMeta } from "@switchboard/fake-meta";
import { createLogger, createMetricsRegistry, type Registry } from "@switchboard/observability";
import { connectPage, disconnectPage, encryptPageToken } from "@switchboard/pages";
import {
  createTestDatabase,
  eventually,
  type TestDatabase,
  testServices,
  uniqueId,
} from "@switchboard/testing";
import { Redis } from "ioredis";
import { RateLimiterRedis } from "rate-limiter-flexible";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPageRouterMetrics } from "./metrics";
import { type RunningPageRouter, startPageRouter } from "./router";

const APP_SECRET = "router-test-app-secret";
const cipher = createTokenCipher(generateTokenKey("k1"));
const log = createLogger({ service: "page-router-test", level: process.env.TEST_LOG_LEVEL ?? "silent" });
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
  const registries: Registry[] = [];
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
        consumer: {
          concurrency: 8,
        },
        pages: {
          cacheTtlMs: 60_000,
          unroutedSweepIntervalMs: 1_000,
        },
        profiles: {
          graph: {
            messenger: { baseUrl: metaServer.url, version: "v21.0", appSecret: APP_SECRET },
            instagram: {
              baseUrl: `${metaServer.url}/instagram-api`,
              version: "v21.0",
              appSecret: APP_SECRET,
            },
          },
          staleAfterMs: 60_000,
          unavailableTtlMs: 60_000,
          timeoutMs: 2_000,
          callsPerPage: 100,
          callsWindowMs: 10_000,
          usageBackoffPercent: 90,
          backoffMs: 60_000,
        },
        keyPrefix,
      },
    });
    replicas.push(replica);
    registries.push(registry);
  };

  beforeAll(async () => {
    database = await createTestDatabase(applyMigrations);
    db = createDb(database.url);
    bus = await connectBus({
      streams: "provision",
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
    // Two replicas share the durable consumer in every test: nothing may rely on being the only one.
    await startReplica();
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

  /** Connects an Instagram account in Switchboard and at the fake Meta (its Instagram API). */
  const connectInstagram = async (pageId: string, companyId = "acme") => {
    const token = `IGAA-${pageId}-${randomUUID()}`;
    tokens.add(token);
    meta.state.addPage({ pageId, token, platform: "instagram" });
    await connectPage(
      { db, bus, cipher },
      { pageId, name: `IG ${pageId}`, companyId, token, platform: "instagram" },
    );
    return token;
  };

  /**
   * Publishes an entry exactly as the ingress does; `object` is the body's (`page`, `instagram`), absent
   * for entries the ingress stored before it said so.
   */
  const publishEntry = async (entry: Record<string, unknown>, traceId = randomUUID(), object?: string) => {
    const data = JSON.stringify(entry);
    await publishRaw(bus.js, bus.topology.subjects.webhookEntry(String(entry.id)), data, {
      msgId: createHash("sha256").update(data).digest("base64url"),
      headers: {
        [Headers.traceId]: traceId,
        [Headers.receivedAt]: Date.now(),
        ...(object
          ? {
              [Headers.object]: object,
              [Headers.platform]: object === "instagram" ? "instagram" : "messenger",
            }
          : {}),
      },
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
    const call = meta.state.callsTo("1001", "profile").at(-1)!;
    expect(call).toMatchObject({ psid: "5001", appsecretProofValid: true });
  });

  it("publishes nothing new when the same entry is routed again, and uses the cached profile", async () => {
    const item = buildTextMessageItem({ pageId: "1001", psid: "5001", text: "again", mid: "m_text_2" });
    const entry = { id: "1001", time: Date.now(), messaging: [item] };
    await publishEntry(entry);
    await waitForEvents("1001", 2);
    // Meta's retry of the same delivery with a new receive time, as a replay would re-send it.
    await publishRaw(bus.js, bus.topology.subjects.webhookEntry("1001"), JSON.stringify(entry), {
      msgId: "a-different-delivery",
    });
    await publishEntry({
      id: "1001",
      time: Date.now(),
      messaging: [buildEchoItem({ pageId: "1001", psid: "5001", mid: "m_echo_x" })],
    });
    const events = await waitForEvents("1001", 3);
    await new Promise((r) => setTimeout(r, 200));
    expect((await eventsOf("1001")).map((e) => e.eventId)).toEqual([
      "1001:message:m_text_1",
      "1001:message:m_text_2",
      "1001:echo:m_echo_x",
    ]);
    expect(events[1]).toMatchObject({ profileStatus: "cached", profile: { firstName: "Ada" } });
    expect(meta.state.callsTo("1001", "profile")).toHaveLength(1);
  });

  it("fetches each page's profiles with that page's own token", async () => {
    const tokenA = await connect("2001", "acme");
    const tokenB = await connect("2002", "globex");
    meta.state.addUser({ pageId: "2001", psid: "6001", firstName: "Ann" });
    meta.state.addUser({ pageId: "2002", psid: "6002", firstName: "Bob" });
    await Promise.all([
      publishEntry({
        id: "2001",
        time: Date.now(),
        messaging: [buildTextMessageItem({ pageId: "2001", psid: "6001" })],
      }),
      publishEntry({
        id: "2002",
        time: Date.now(),
        messaging: [buildTextMessageItem({ pageId: "2002", psid: "6002" })],
      }),
    ]);
    const [a] = await waitForEvents("2001", 1);
    const [b] = await waitForEvents("2002", 1);
    expect(a).toMatchObject({
      companyId: "acme",
      psid: "6001",
      profile: { firstName: "Ann" },
      profileStatus: "fetched",
    });
    expect(b).toMatchObject({
      companyId: "globex",
      psid: "6002",
      profile: { firstName: "Bob" },
      profileStatus: "fetched",
    });
    expect(meta.state.callsTo("2001", "profile").map((c) => c.token)).toEqual([tokenA]);
    expect(meta.state.callsTo("2002", "profile").map((c) => c.token)).toEqual([tokenB]);
  });

  it("routes an Instagram entry for an Instagram account as instagram, with the profile from the Instagram host and the account's token", async () => {
    const token = await connectInstagram("17841400000008001");
    meta.state.addUser({ pageId: "17841400000008001", psid: "9800", name: "Ada L", username: "ada" });
    const item = buildTextMessageItem({ pageId: "17841400000008001", psid: "9800", mid: "aWdfig_1" });
    await publishEntry(
      { id: "17841400000008001", time: Date.now(), messaging: [item] },
      randomUUID(),
      "instagram",
    );
    const [event] = await waitForEvents("17841400000008001", 1);
    expect(event).toMatchObject({
      kind: "message",
      platform: "instagram",
      psid: "9800",
      profileStatus: "fetched",
      profile: { name: "Ada L", username: "ada", firstName: null, lastName: null },
    });
    const calls = meta.state.callsTo("17841400000008001", "profile");
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({ host: "instagram", token, appsecretProofValid: true });
    expect(calls[0]!.query.fields).toBe("name,username,profile_pic");
  });

  it("replays an Instagram entry parked before the ingress said its platform, as instagram, once the account is connected", async () => {
    const item = buildTextMessageItem({ pageId: "17841400000008002", psid: "9801", mid: "aWdfig_old" });
    await publishEntry({ id: "17841400000008002", time: Date.now(), messaging: [item] });
    await eventually(
      async () =>
        (
          await listStored(
            bus.js,
            bus.jsm,
            bus.topology.streams.unrouted.name,
            bus.topology.subjects.unrouted("17841400000008002"),
          )
        ).length === 1,
    );
    await connectInstagram("17841400000008002");
    const [event] = await waitForEvents("17841400000008002", 1);
    expect(event).toMatchObject({ platform: "instagram", mid: "aWdfig_old" });
  });

  it("ignores the App Dashboard's test entry (id 0, changes only) instead of parking it", async () => {
    await publishEntry(
      { id: "0", time: Date.now(), changes: [{ field: "messages", value: {} }] },
      randomUUID(),
      "page",
    );
    await eventually(async () => {
      const text = await registries[0]!.metrics();
      const other = await registries[1]!.metrics();
      return /entries_ignored_total\{[^}]*reason="dashboard_test"[^}]*\} 1/.test(text + other);
    });
    const parked = await listStored(
      bus.js,
      bus.jsm,
      bus.topology.streams.unrouted.name,
      bus.topology.subjects.unrouted("0"),
    );
    expect(parked).toEqual([]);
  });

  it("parks entries of an unknown page and replays them once the page is connected", async () => {
    const items = [1, 2, 3].map((n) =>
      buildTextMessageItem({ pageId: "3001", psid: "7001", mid: `m_late_${n}` }),
    );
    for (const item of items) await publishEntry({ id: "3001", time: Date.now(), messaging: [item] });
    const parked = await eventually(async () => {
      const stored = await listStored(
        bus.js,
        bus.jsm,
        bus.topology.streams.unrouted.name,
        bus.topology.subjects.unrouted("3001"),
      );
      return stored.length === 3 && stored;
    });
    expect(parked.map((m) => m.reason)).toEqual(["unknown_page", "unknown_page", "unknown_page"]);
    expect(await eventsOf("3001")).toEqual([]);

    meta.state.addUser({ pageId: "3001", psid: "7001", firstName: "Late" });
    await connect("3001");
    const events = await waitForEvents("3001", 3);
    expect(events.map((e) => e.eventId).sort()).toEqual([
      "3001:message:m_late_1",
      "3001:message:m_late_2",
      "3001:message:m_late_3",
    ]);
    expect(events[0]).toMatchObject({ profile: { firstName: "Late" } });
    await eventually(
      async () =>
        (
          await listStored(
            bus.js,
            bus.jsm,
            bus.topology.streams.unrouted.name,
            bus.topology.subjects.unrouted("3001"),
          )
        ).length === 0,
    );
  });

  it("parks entries of a disconnected page and undecodable entries, with the reason", async () => {
    await connect("3101");
    await disconnectPage({ db, bus }, "3101");
    await publishEntry({
      id: "3101",
      time: Date.now(),
      messaging: [buildTextMessageItem({ pageId: "3101", psid: "7101" })],
    });
    await publishRaw(bus.js, bus.topology.subjects.webhookEntry("3102"), "{not json", { msgId: "broken-1" });
    await publishRaw(bus.js, bus.topology.subjects.webhookEntry("3103"), JSON.stringify({ time: 1 }), {
      msgId: "broken-2",
    });
    const reasons = await eventually(async () => {
      const stored = await listStored(bus.js, bus.jsm, bus.topology.streams.unrouted.name);
      const mine = stored.filter((m) => /\.(3101|3102|3103)$/.test(m.subject));
      return (
        mine.length === 3 && Object.fromEntries(mine.map((m) => [m.subject.split(".").at(-1), m.reason]))
      );
    });
    expect(reasons).toEqual({
      "3101": "page_disabled",
      "3102": "undecodable: not JSON",
      "3103": expect.stringMatching(/^undecodable: id /),
    });
  });

  it("takes back an entry without a page id that the ingress kept: parked again while undecodable, routed by its id once decodable", async () => {
    const noPage = bus.topology.subjects.webhookEntry(ENTRY_WITHOUT_PAGE);
    // As `pnpm sb unrouted replay` sends it: the original headers, on the subject it was parked for.
    const broken = JSON.stringify({ time: 1, messaging: [] });
    await publishRaw(bus.js, noPage, broken, { headers: { [Headers.traceId]: "trace-no-page" } });
    const [again] = await eventually(async () => {
      const stored = await listStored(
        bus.js,
        bus.jsm,
        bus.topology.streams.unrouted.name,
        bus.topology.subjects.unrouted(ENTRY_WITHOUT_PAGE),
      );
      return stored.length === 1 && stored;
    });
    expect(decoder.decode(again!.data)).toBe(broken);
    expect(again!.reason).toMatch(/^undecodable: id /);
    expect(again!.headers[Headers.traceId]).toBe("trace-no-page");
    expect(again!.headers[Headers.originalSubject]).toBe(noPage);

    await connect("3201");
    const item = buildTextMessageItem({ pageId: "3201", psid: "7201", mid: "m_no_page_fixed" });
    await publishRaw(bus.js, noPage, JSON.stringify({ id: "3201", time: Date.now(), messaging: [item] }), {
      headers: { [Headers.traceId]: "trace-fixed" },
    });
    const [event] = await waitForEvents("3201", 1);
    expect(event).toMatchObject({ pageId: "3201", mid: "m_no_page_fixed", traceId: "trace-fixed" });
  });

  it("reads an entry the ingress stored in the large-entries bucket (Sb-Entry-Ref) and routes it whole", async () => {
    await connect("3301");
    // Larger than the local broker's 1 MiB max payload (a batch of 800 messages of Messenger's longest
    // text), stored as the ingress stores such an entry.
    const messaging = Array.from({ length: 800 }, (_, n) =>
      buildTextMessageItem({ pageId: "3301", psid: "7301", mid: `m_large_${n}`, text: "x".repeat(2000) }),
    );
    const data = new TextEncoder().encode(JSON.stringify({ id: "3301", time: Date.now(), messaging }));
    expect(data.length).toBeGreaterThan(1_500_000);
    const bucket = await new Objm(bus.js).create(bus.topology.buckets.largeEntries);
    await bucket.putBlob({ name: "large-entry-1" }, data);
    await publishRaw(bus.js, bus.topology.subjects.webhookEntry("3301"), new Uint8Array(0), {
      msgId: "large-entry-1",
      headers: { [Headers.traceId]: "trace-large", [Headers.entryRef]: "large-entry-1" },
    });
    const events = await waitForEvents("3301", 800);
    expect(events.map((e) => (e as { mid?: string }).mid).sort()).toEqual(
      messaging.map((i) => i.message.mid).sort(),
    );
    expect(events[0]).toMatchObject({ traceId: "trace-large", text: "x".repeat(2000) });

    // One whose object is gone is dead-lettered with the reason, not retried for ever.
    await publishRaw(bus.js, bus.topology.subjects.webhookEntry("3301"), new Uint8Array(0), {
      msgId: "large-entry-gone",
      headers: { [Headers.entryRef]: "large-entry-gone" },
    });
    const [dead] = await eventually(async () => {
      const stored = await listStored(
        bus.js,
        bus.jsm,
        bus.topology.streams.deadLetter.name,
        bus.topology.subjects.deadLetter("page-router"),
      );
      const mine = stored.filter((m) => m.headers[Headers.entryRef] === "large-entry-gone");
      return mine.length === 1 && mine;
    });
    expect(dead!.reason).toMatch(/large entry large-entry-gone is no longer stored/);
    await bucket.destroy();
  });

  it("uses a rotated token on the very next profile call, on every replica", async () => {
    const oldToken = await connect("4001");
    for (const psid of ["8001", "8002", "8003", "8004"]) meta.state.addUser({ pageId: "4001", psid });
    await publishEntry({
      id: "4001",
      time: Date.now(),
      messaging: [buildTextMessageItem({ pageId: "4001", psid: "8001" })],
    });
    await waitForEvents("4001", 1);

    const newToken = `EAAB-rotated-${randomUUID()}`;
    tokens.add(newToken);
    meta.state.setToken("4001", newToken);
    await connectPage(
      { db, bus, cipher },
      { pageId: "4001", name: "Page 4001", companyId: "acme", token: newToken },
    );
    // Lifecycle events reach every replica on a plain subscription; give NATS a moment to deliver it.
    await new Promise((r) => setTimeout(r, 100));
    for (const psid of ["8002", "8003", "8004"]) {
      await publishEntry({
        id: "4001",
        time: Date.now(),
        messaging: [buildTextMessageItem({ pageId: "4001", psid })],
      });
    }
    const events = await waitForEvents("4001", 4);
    expect(events.every((e) => e.kind === "message" && e.profileStatus === "fetched")).toBe(true);
    expect(meta.state.callsTo("4001", "profile").map((c) => c.token)).toEqual([
      oldToken,
      newToken,
      newToken,
      newToken,
    ]);
  });

  it("marks the page for re-authorisation on error 190 and still publishes the message", async () => {
    await connect("5001");
    meta.state.addUser({ pageId: "5001", psid: "9001" });
    meta.state.addUser({ pageId: "5001", psid: "9002" });
    meta.state.revokeToken("5001");
    await publishEntry({
      id: "5001",
      time: Date.now(),
      messaging: [buildTextMessageItem({ pageId: "5001", psid: "9001" })],
    });
    const [event] = await waitForEvents("5001", 1);
    expect(event).toMatchObject({ kind: "message", profile: null, profileStatus: "unavailable" });
    await eventually(
      async () =>
        (await db.pageConnection.findUnique({ where: { pageId: "5001" } }))?.status ===
        "reauthorization_required",
    );
    const lifecycle = (await listStored(bus.js, bus.jsm, bus.topology.streams.pages.name))
      .map((m) => PageLifecycleEvent.parse(JSON.parse(decoder.decode(m.data))))
      .filter((e) => e.pageId === "5001");
    expect(lifecycle.at(-1)).toMatchObject({
      type: "page.status_changed",
      status: "reauthorization_required",
    });

    // Messages keep flowing; the known-bad token is not used again.
    await publishEntry({
      id: "5001",
      time: Date.now(),
      messaging: [buildTextMessageItem({ pageId: "5001", psid: "9002" })],
    });
    const events = await waitForEvents("5001", 2);
    expect(events[1]).toMatchObject({ psid: "9002", profileStatus: "unavailable" });
    expect(meta.state.callsTo("5001", "profile")).toHaveLength(1);
  });

  it("backs off one page after a rate-limit error or high usage, without delaying its messages", async () => {
    await connect("6001");
    await connect("6002");
    await connect("6003");
    for (const psid of ["6101", "6102"]) meta.state.addUser({ pageId: "6001", psid });
    for (const psid of ["6201", "6202"]) meta.state.addUser({ pageId: "6002", psid });
    for (const psid of ["6301", "6302"]) meta.state.addUser({ pageId: "6003", psid });
    meta.state.injectError("6001", { code: 613, endpoint: "profile", times: 1 });
    meta.state.setUsage("6002", 95);
    const send = (pageId: string, psid: string) =>
      publishEntry({ id: pageId, time: Date.now(), messaging: [buildTextMessageItem({ pageId, psid })] });

    await Promise.all([send("6001", "6101"), send("6002", "6201"), send("6003", "6301")]);
    await Promise.all([waitForEvents("6001", 1), waitForEvents("6002", 1), waitForEvents("6003", 1)]);
    expect(await redis.get(`${keyPrefix}graph:backoff:6001`)).toBe("rate_limit_error");
    expect(await redis.get(`${keyPrefix}graph:backoff:6002`)).toBe("high_usage");
    expect(await redis.pttl(`${keyPrefix}graph:backoff:6001`)).toBeGreaterThan(0);

    await Promise.all([send("6001", "6102"), send("6002", "6202"), send("6003", "6302")]);
    const [a, b, c] = await Promise.all([
      waitForEvents("6001", 2),
      waitForEvents("6002", 2),
      waitForEvents("6003", 2),
    ]);
    expect([a[0], a[1]].map((e) => (e as { profileStatus: string }).profileStatus)).toEqual([
      "unavailable",
      "unavailable",
    ]);
    expect((b[0] as { profileStatus: string }).profileStatus).toBe("fetched");
    expect((b[1] as { profileStatus: string }).profileStatus).toBe("unavailable");
    expect(c.map((e) => (e as { profileStatus: string }).profileStatus)).toEqual(["fetched", "fetched"]);
    expect(meta.state.callsTo("6001", "profile")).toHaveLength(1);
    expect(meta.state.callsTo("6002", "profile")).toHaveLength(1);
    expect(meta.state.callsTo("6003", "profile")).toHaveLength(2);
  });

  it("shares each page's Graph token bucket between replicas through Redis", async () => {
    await connect("6501");
    meta.state.addUser({ pageId: "6501", psid: "6511" });
    // Another replica spent this page's whole bucket.
    const elsewhere = new RateLimiterRedis({
      storeClient: redis,
      keyPrefix: `${keyPrefix}graph:bucket`,
      points: 100,
      duration: 10,
    });
    await elsewhere.consume("6501", 100);
    await publishEntry({
      id: "6501",
      time: Date.now(),
      messaging: [buildTextMessageItem({ pageId: "6501", psid: "6511" })],
    });
    const [event] = await waitForEvents("6501", 1);
    expect(event).toMatchObject({ profileStatus: "unavailable" });
    expect(meta.state.callsTo("6501", "profile")).toHaveLength(0);
  });

  it("lets several replicas share the durable consumer without duplicates", async () => {
    const pages = ["7001", "7002", "7003"];
    for (const pageId of pages) await connect(pageId);
    const sent: string[] = [];
    await Promise.all(
      Array.from({ length: 30 }, (_, n) => {
        const pageId = pages[n % 3]!;
        const mid = `m_many_${n}`;
        sent.push(`${pageId}:message:${mid}`);
        return publishEntry({
          id: pageId,
          time: Date.now(),
          messaging: [buildTextMessageItem({ pageId, psid: `71${n}`, mid })],
        });
      }),
    );
    const all = (await Promise.all(pages.map((p) => waitForEvents(p, 10)))).flat();
    await new Promise((r) => setTimeout(r, 200));
    const ids = (await Promise.all(pages.map(eventsOf))).flat().map((e) => e.eventId);
    expect(ids.sort()).toEqual(sent.sort());
    expect(all).toHaveLength(30);
    const received = await Promise.all(
      registries.map(
        async (r) => (await r.getSingleMetric("switchboard_router_entries_received_total")!.get()).values,
      ),
    );
    const handled = received.map((values) =>
      values.filter((v) => pages.includes(String(v.labels.page_id))).reduce((sum, v) => sum + v.value, 0),
    );
    expect(handled.reduce((a, b) => a + b)).toBe(30);
  });

  it("replays parked entries of a page connected while no lifecycle event reached it (periodic sweep)", async () => {
    await publishEntry({
      id: "7501",
      time: Date.now(),
      messaging: [buildTextMessageItem({ pageId: "7501", psid: "7511" })],
    });
    await eventually(
      async () =>
        (
          await listStored(
            bus.js,
            bus.jsm,
            bus.topology.streams.unrouted.name,
            bus.topology.subjects.unrouted("7501"),
          )
        ).length === 1,
    );
    await db.pageConnection.create({
      data: {
        pageId: "7501",
        companyId: "acme",
        name: "Quiet",
        pageAccessTokenEnc: encryptPageToken(cipher, "7501", "EAAB-quiet"),
      },
    });
    tokens.add("EAAB-quiet");
    const [event] = await waitForEvents("7501", 1);
    expect(event).toMatchObject({ kind: "message", psid: "7511" });
  });

  it("fetches a stale profile again, and falls back to the stale one when Meta fails", async () => {
    await connect("7601");
    meta.state.addUser({ pageId: "7601", psid: "7611", firstName: "Renamed" });
    meta.state.addUser({ pageId: "7601", psid: "7612", firstName: "Current" });
    const old = (firstName: string) =>
      JSON.stringify({
        profile: { firstName, lastName: null, profilePicUrl: null },
        fetchedAt: Date.now() - 3_600_000,
      });
    // With a TTL like the cache's own entries: a test leaves nothing behind in Redis.
    await redis.set(`${keyPrefix}profile:7601:7611`, old("Old name"), "PX", 600_000);
    await redis.set(`${keyPrefix}profile:7601:7612`, old("Last known"), "PX", 600_000);
    await publishEntry({
      id: "7601",
      time: Date.now(),
      messaging: [buildTextMessageItem({ pageId: "7601", psid: "7611" })],
    });
    const [refreshed] = await waitForEvents("7601", 1);
    expect(refreshed).toMatchObject({ profileStatus: "fetched", profile: { firstName: "Renamed" } });

    meta.state.injectError("7601", { code: 2, endpoint: "profile" });
    await publishEntry({
      id: "7601",
      time: Date.now(),
      messaging: [buildTextMessageItem({ pageId: "7601", psid: "7612" })],
    });
    const events = await waitForEvents("7601", 2);
    expect(events[1]).toMatchObject({ profileStatus: "cached", profile: { firstName: "Last known" } });
    expect(meta.state.callsTo("7601", "profile")).toHaveLength(2);
    meta.state.clearErrors("7601");
  });

  it("exports routing, unrouted, profile and Graph metrics per page", async () => {
    const values = async (name: string) =>
      (await Promise.all(registries.map(async (r) => (await r.getSingleMetric(name)!.get()).values))).flat();
    const sum = async (name: string, labels: Record<string, string>) =>
      (await values(name))
        .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
        .reduce((total, v) => total + v.value, 0);
    expect(await sum("switchboard_router_events_routed_total", { page_id: "1001", kind: "message" })).toBe(2);
    expect(await sum("switchboard_router_events_routed_total", { page_id: "1001", kind: "echo" })).toBe(1);
    expect(
      await sum("switchboard_router_entries_unrouted_total", { page_id: "3101", reason: "page_disabled" }),
    ).toBe(1);
    expect(await sum("switchboard_router_unrouted_replayed_total", { page_id: "3001" })).toBe(3);
    expect(await sum("switchboard_graph_calls_total", { page_id: "5001", outcome: "invalid_token" })).toBe(1);
    expect(
      await sum("switchboard_graph_backoffs_total", { page_id: "6001", reason: "rate_limit_error" }),
    ).toBe(1);
    expect(
      await sum("switchboard_graph_calls_skipped_total", { page_id: "6001", reason: "backing_off" }),
    ).toBe(1);
    expect(await sum("switchboard_graph_usage_percent", { page_id: "6002" })).toBe(95);
    expect(await sum("switchboard_router_events_duplicate_total", { page_id: "1001" })).toBe(1);
    expect(await sum("switchboard_router_profile_lookups_total", { page_id: "1001", status: "cached" })).toBe(
      2,
    );
  });

  it("never puts a token on the bus", async () => {
    expect(tokens.size).toBeGreaterThan(5);
    expect(busTraffic.some((text) => text.includes('"kind":"message"'))).toBe(true);
    for (const token of tokens) {
      expect(busTraffic.filter((text) => text.includes(token))).toEqual([]);
    }
    expect(busTraffic.filter((text) => text.includes("v1.k1."))).toEqual([]);
  });

  it("parks an entry whose platform is not its connection's (platform_mismatch), and does not replay it on connect", async () => {
    await connect("3501");
    await publishEntry(
      { id: "3501", time: Date.now(), messaging: [buildTextMessageItem({ pageId: "3501", psid: "7501" })] },
      randomUUID(),
      "instagram",
    );
    const parked = await eventually(async () => {
      const stored = await listStored(
        bus.js,
        bus.jsm,
        bus.topology.streams.unrouted.name,
        bus.topology.subjects.unrouted("3501"),
      );
      return stored.length === 1 && stored;
    });
    expect(parked[0]!.reason).toBe("platform_mismatch: a instagram entry for a messenger connection");
    expect(await eventsOf("3501")).toEqual([]);
  });
});
