import { type Bus, connectBus, deleteStreams, type JsMsg, listStored } from "@switchboard/bus";
import { buildTextMessageItem, PSID_FLOOD_FLAGGED, PsidFloodFlaggedEvent } from "@switchboard/contracts";
import { type RedisNodes, startRedisNodes } from "@switchboard/local-system";
import { createLogger, createMetricsRegistry, redisReadiness } from "@switchboard/observability";
import { closeRedisNodes, connectRedisNodes, createFailoverRedis } from "@switchboard/redis-nodes";
import { testServices, uniqueId } from "@switchboard/testing";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFairShare } from "./fair-share";
import { createPageRouterMetrics } from "./metrics";
import { normaliseEntry } from "./normalise";

const log = createLogger({ service: "page-router-test", level: process.env.TEST_LOG_LEVEL ?? "silent" });
const PAGE = "404217156637689";

/** What the fair share reads of an entry: its delivery count and when the ingress received it. */
const delivery = (deliveryCount = 1, receivedAt = Date.now()) =>
  ({
    info: { deliveryCount, timestampNanos: receivedAt * 1e6 },
    headers: undefined,
  }) as unknown as JsMsg;
const OTHER_PAGE = "404217156637690";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const untilReady = (client: Redis) =>
  new Promise<void>((resolve) => {
    if (client.status === "ready") resolve();
    else client.once("ready", () => resolve());
  });

function createTestFairShare(bus: Bus, redis: Redis, maxDelayMs = 60_000) {
  return createFairShare({
    bus,
    redis,
    keyPrefix: `${uniqueId()}:`,
    settings: {
      ratePerSecond: 1,
      burst: 2,
      overrides: new Map(),
      psidFloodThreshold: 3,
      psidFloodWindowMs: 60_000,
      maxDelayMs,
    },
    metrics: createPageRouterMetrics(createMetricsRegistry("page-router")),
    log,
  });
}
type TestFairShare = ReturnType<typeof createTestFairShare>;

/** How many of `count` first deliveries are routed at once rather than moved to the page's overflow. */
async function admitted(share: TestFairShare, count: number, pageId = PAGE) {
  let passed = 0;
  for (let i = 0; i < count; i++) {
    if (!(await share.admit(delivery(), pageId)).overflow) passed++;
  }
  return passed;
}

describe("fair share over several Redis nodes", () => {
  let cluster: RedisNodes;
  let nodes: Redis[];
  let bus: Bus;

  beforeAll(async () => {
    cluster = await startRedisNodes(3);
    // As main.ts builds it: every REDIS_URL node, failing fast, behind the failover client.
    nodes = connectRedisNodes(
      cluster.nodes.map((n) => n.url),
      log,
      { connectionName: "page-router-test", enableOfflineQueue: false },
    );
    await Promise.all(nodes.map(untilReady));
    bus = await connectBus({
      streams: "provision",
      servers: [testServices().natsUrl],
      name: "fair-share-test",
      namespace: uniqueId(),
      log,
    });
  }, 60_000);

  afterAll(async () => {
    await deleteStreams(bus.jsm, bus.topology);
    await bus.drain();
    await closeRedisNodes(nodes);
    await cluster.stop();
  });

  const fairShare = (redis: Redis) => createTestFairShare(bus, redis);

  it("keeps shaping a page and flagging floods with node 0 killed, and says ready throughout", async () => {
    const redis = createFailoverRedis(nodes, log);
    const share = fairShare(redis);
    const ready = redisReadiness(redis, { cacheMs: 0 });

    // Another page is waiting: at 1/s with a burst of 2, three entries pass at once and the rest overflow.
    await share.activePages.markActive(OTHER_PAGE);
    expect(await admitted(share, 6)).toBe(3);
    expect(await ready.check()).toBe(true);

    await cluster.nodes[0]!.kill();
    // Node 1 starts the page's schedule (and the active pages) afresh, then shapes it as before.
    await sleep(300);
    await share.activePages.markActive(OTHER_PAGE);
    expect(await admitted(share, 6)).toBe(3);
    expect(await ready.check()).toBe(true);

    const psid = "1423587017700273";
    const events = normaliseEntry(
      {
        id: PAGE,
        time: Date.now(),
        messaging: [1, 2, 3].map(() => buildTextMessageItem({ pageId: PAGE, psid })),
      },
      { pageId: PAGE, companyId: "acme", platform: "messenger", traceId: "trace", receivedAt: Date.now() },
    );
    await share.account(delivery(), PAGE, events, true);
    const flags = await listStored(
      bus.js,
      bus.jsm,
      bus.topology.streams.domain.name,
      bus.topology.subjects.domainEvent(PSID_FLOOD_FLAGGED, PAGE),
    );
    expect(flags).toHaveLength(1);
    expect(PsidFloodFlaggedEvent.parse(JSON.parse(new TextDecoder().decode(flags[0]!.data)))).toMatchObject({
      pageId: PAGE,
      psid,
      threshold: 3,
    });

    await Promise.all(cluster.nodes.slice(1).map((n) => n.kill()));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await ready.check()).toBe(false);
  }, 60_000);
});

describe("fair share: work-conserving, counted once per entry", () => {
  const redis = new Redis(testServices().redisUrl);
  let bus: Bus;

  beforeAll(async () => {
    bus = await connectBus({
      streams: "provision",
      servers: [testServices().natsUrl],
      name: "fair-share-test",
      namespace: uniqueId(),
      log,
    });
  });
  afterAll(async () => {
    await deleteStreams(bus.jsm, bus.topology);
    await bus.drain();
    await redis.quit();
  });

  it("never shapes a page alone, however fast; shapes it to its share as soon as another page waits", async () => {
    const share = createTestFairShare(bus, redis);
    // 1/s and a burst of 2 would hold back 97 of these 100 if the page were shaped.
    expect(await admitted(share, 100)).toBe(100);
    await share.activePages.markActive(OTHER_PAGE);
    await sleep(300); // past the replica's cached look at the active pages
    expect(await admitted(share, 10)).toBe(3);
    expect(await share.admit(delivery(), OTHER_PAGE)).toEqual({ overflow: false, shared: true });
  });

  it("takes no slot for a redelivered entry, nor for one handled again in-process after an outage", async () => {
    const share = createTestFairShare(bus, redis);
    await share.activePages.markActive(OTHER_PAGE);
    const psid = "1423587017700274";
    const events = normaliseEntry(
      {
        id: PAGE,
        time: Date.now(),
        messaging: [1, 2].map(() => buildTextMessageItem({ pageId: PAGE, psid })),
      },
      { pageId: PAGE, companyId: "acme", platform: "messenger", traceId: "trace", receivedAt: Date.now() },
    );
    // One entry handled three times (the consumer kept it through an outage), then redelivered twice.
    const entry = delivery();
    for (let i = 0; i < 3; i++) {
      expect((await share.admit(entry, PAGE)).overflow).toBe(false);
      await share.account(entry, PAGE, events, true);
    }
    for (let i = 0; i < 2; i++) {
      const redelivered = delivery(2);
      expect(await share.admit(redelivered, PAGE)).toEqual({ overflow: false, shared: false });
      await share.account(redelivered, PAGE, events, true);
    }
    // The entry took its two slots (one, plus one for its second message) once: of the burst's three one
    // is left; and the person's two messages were counted once (threshold 3: not flagged).
    expect(await admitted(share, 3)).toBe(1);
    const flags = await listStored(
      bus.js,
      bus.jsm,
      bus.topology.streams.domain.name,
      bus.topology.subjects.domainEvent(PSID_FLOOD_FLAGGED, PAGE),
    );
    expect(flags).toHaveLength(0);
    const fresh = createTestFairShare(bus, redis);
    await fresh.activePages.markActive(OTHER_PAGE);
    for (let i = 0; i < 3; i++) await fresh.account(delivery(2), PAGE, events, true);
    // Three redeliveries reserved nothing: the burst is whole.
    expect(await admitted(fresh, 5)).toBe(3);
  });

  it("an overflow entry waits for its share while others wait, not at all alone, and never past the bound", async () => {
    const share = createTestFairShare(bus, redis, 1500);
    // The other page keeps having entries.
    await share.activePages.markActive(OTHER_PAGE);
    const otherPageWriting = setInterval(() => void share.activePages.markActive(OTHER_PAGE), 300);
    expect(await admitted(share, 3)).toBe(3);
    // The burst is spent: the next slot is about a second away (1/s).
    let started = Date.now();
    expect(await share.awaitShare(delivery(), PAGE)).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(700);
    // Received 1.4 s ago: overdue (bound 1.5 s) before its slot two seconds away comes.
    started = Date.now();
    expect(await share.awaitShare(delivery(1, Date.now() - 1400), PAGE)).toBe(true);
    expect(Date.now() - started).toBeLessThan(1000);
    // Shutting down: a waiting entry goes on at once rather than hold the drain's stop.
    const stopping = new AbortController();
    setTimeout(() => stopping.abort(), 100);
    started = Date.now();
    expect(await share.awaitShare(delivery(), PAGE, stopping.signal)).toBe(false);
    expect(Date.now() - started).toBeLessThan(700);
    // Alone again (the other page's activity is over a second old): no wait, no share.
    clearInterval(otherPageWriting);
    await sleep(1300);
    started = Date.now();
    expect(await share.awaitShare(delivery(), PAGE)).toBe(false);
    expect(Date.now() - started).toBeLessThan(300);
  });
});
