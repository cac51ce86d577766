import { randomUUID } from "node:crypto";
import { type Bus, connectBus, deleteStreams, listStored, publishRaw } from "@switchboard/bus";
import { buildTextMessageItem, Headers } from "@switchboard/contracts";
import { createTokenCipher, generateTokenKey } from "@switchboard/crypto";
import { applyMigrations, createDb, type Db } from "@switchboard/db";
import { createLogger, createMetricsRegistry, type Registry } from "@switchboard/observability";
import { createActivePages } from "@switchboard/page-quota";
import { connectPage } from "@switchboard/pages";
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

const cipher = createTokenCipher(generateTokenKey("k1"));
const log = createLogger({ service: "page-router-test", level: process.env.TEST_LOG_LEVEL ?? "silent" });
const FLOOD = "2001";
const QUIET = "2002";
/** Fewer slots on the shared consumer than the flood has entries over its share. */
const MAX_ACK_PENDING = 10;
const FLOOD_ENTRIES = 80;

describe("page-router fair share: a page's excess waits in its overflow, off the shared consumer", () => {
  let database: TestDatabase;
  let db: Db;
  let bus: Bus;
  let redis: Redis;
  let router: RunningPageRouter;
  let registry: Registry;
  const keyPrefix = `${uniqueId()}:`;

  beforeAll(async () => {
    database = await createTestDatabase(applyMigrations);
    db = createDb(database.url);
    bus = await connectBus({
      streams: "provision",
      servers: [testServices().natsUrl],
      name: "overflow-test",
      namespace: uniqueId(),
      log,
    });
    redis = new Redis(testServices().redisUrl);
    registry = createMetricsRegistry("page-router");
    router = await startPageRouter({
      bus,
      db,
      redis,
      cipher,
      log,
      metrics: createPageRouterMetrics(registry),
      settings: {
        consumer: {
          concurrency: 4,
          maxAckPending: MAX_ACK_PENDING,
        },
        pages: {
          cacheTtlMs: 60_000,
          unroutedSweepIntervalMs: 60_000,
        },
        profiles: {
          graph: {
            messenger: { baseUrl: "http://127.0.0.1:9", version: "v21.0", appSecret: "secret" },
            instagram: { baseUrl: "http://127.0.0.1:9", version: "v21.0", appSecret: "secret" },
          },
          staleAfterMs: 60_000,
          unavailableTtlMs: 60_000,
          timeoutMs: 200,
          callsPerPage: 100,
          callsWindowMs: 10_000,
          usageBackoffPercent: 90,
          backoffMs: 60_000,
        },
        // No Graph answers here: profiles come out unavailable, which never blocks routing.
        keyPrefix,
        fairShare: {
          ratePerSecond: 10,
          burst: 5,
          overrides: new Map(),
          psidFloodThreshold: 1000,
          psidFloodWindowMs: 60_000,
          maxDelayMs: 120_000,
        },
      },
    });
    for (const pageId of [FLOOD, QUIET]) {
      await connectPage(
        { db, bus, cipher },
        { pageId, name: `Page ${pageId}`, companyId: "acme", token: `EAAB-${randomUUID()}` },
      );
    }
  });

  afterAll(async () => {
    await router.stop();
    await deleteStreams(bus.jsm, bus.topology);
    await bus.drain();
    await redis.quit();
    await db.$disconnect();
    await database.drop();
  });

  const publishEntry = (pageId: string, n: number) =>
    publishRaw(
      bus.js,
      bus.topology.subjects.webhookEntry(pageId),
      JSON.stringify({
        id: pageId,
        time: Date.now(),
        messaging: [buildTextMessageItem({ pageId, psid: `7${n % 10}`, mid: `m_${pageId}_${n}` })],
      }),
      { msgId: `${pageId}:${n}`, headers: { [Headers.receivedAt]: Date.now() } },
    );
  const eventsOf = async (pageId: string) =>
    (
      await listStored(
        bus.js,
        bus.jsm,
        bus.topology.streams.events.name,
        bus.topology.subjects.messagingEvent(pageId),
      )
    ).length;
  const counter = async (name: string, pageId: string) =>
    (await registry.getSingleMetric(name)?.get())?.values.find((v) => v.labels.page_id === pageId)?.value ??
    0;

  it("routes the other pages past a flood larger than the shared consumer's slots, then drains the flood whole", async () => {
    // The quiet page keeps writing (as seen by another replica) while the flood waits for its share.
    const quietPage = createActivePages({ redis, keyPrefix, windowMs: 1000, cacheMs: 0 });
    await quietPage.markActive(QUIET);
    const quietWriting = setInterval(() => void quietPage.markActive(QUIET), 200);
    try {
      for (let n = 0; n < FLOOD_ENTRIES; n++) await publishEntry(FLOOD, n);
      // An entry of the flood no one can decode: parked from the overflow like any other.
      await publishRaw(bus.js, bus.topology.subjects.webhookEntry(FLOOD), "not json", { msgId: "garbled" });
      for (let n = 0; n < 5; n++) await publishEntry(QUIET, n);

      await eventually(async () => (await eventsOf(QUIET)) === 5, {
        timeoutMs: 5_000,
        message: "the quiet page's 5 entries routed",
      });
      // At 10/s after a burst of 5, most of the flood is still waiting, in its overflow.
      expect(await eventsOf(FLOOD)).toBeLessThan(FLOOD_ENTRIES / 2);
      const delayed = await counter("switchboard_router_entries_delayed_total", FLOOD);
      expect(delayed).toBeGreaterThan(MAX_ACK_PENDING);
      const shared = await bus.jsm.consumers.info(
        bus.topology.streams.webhooks.name,
        bus.topology.consumers.pageRouter,
      );
      expect(shared.num_ack_pending).toBe(0);
      expect(shared.num_pending).toBe(0);
      const drain = await bus.jsm.consumers.info(
        bus.topology.streams.overflow.name,
        bus.topology.consumers.pageOverflowDrain(FLOOD),
      );
      expect(drain.config.filter_subject).toBe(bus.topology.subjects.pageOverflow(FLOOD));
      expect(drain.config.inactive_threshold).toBeGreaterThan(0);
      // Still shaped a second on: the drain hands out the page's share, not more.
      await new Promise((r) => setTimeout(r, 1000));
      expect(await eventsOf(FLOOD)).toBeLessThan(FLOOD_ENTRIES / 2);
    } finally {
      clearInterval(quietWriting);
    }

    // The quiet page stops: the flood is alone and its overflow drains at full speed.
    await eventually(async () => (await eventsOf(FLOOD)) === FLOOD_ENTRIES, {
      timeoutMs: 5_000,
      message: "the whole flood routed",
    });
    const parked = await listStored(
      bus.js,
      bus.jsm,
      bus.topology.streams.unrouted.name,
      bus.topology.subjects.unrouted(FLOOD),
    );
    expect(parked).toHaveLength(1);
    // A replay sends it back to the webhooks stream, not to the overflow.
    expect(parked[0]!.headers[Headers.originalSubject]).toBe(bus.topology.subjects.webhookEntry(FLOOD));
    await eventually(
      async () => (await bus.jsm.streams.info(bus.topology.streams.overflow.name)).state.messages === 0,
      { message: "the overflow emptied" },
    );
    expect(await counter("switchboard_router_overflow_drained_total", FLOOD)).toBe(
      await counter("switchboard_router_entries_delayed_total", FLOOD),
    );
    expect(await counter("switchboard_router_entries_delayed_total", QUIET)).toBe(0);
  });
});
