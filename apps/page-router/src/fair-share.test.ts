import { type Bus, connectBus, deleteStreams, type JsMsg, listStored } from "@switchboard/bus";
import { buildTextMessageItem, PSID_FLOOD_FLAGGED, PsidFloodFlaggedEvent } from "@switchboard/contracts";
import { type RedisNodes, startRedisNodes } from "@switchboard/local-system";
import { createLogger, createMetricsRegistry, redisReadiness } from "@switchboard/observability";
import { closeRedisNodes, connectRedisNodes, createFailoverRedis } from "@switchboard/redis-nodes";
import { testServices, uniqueId } from "@switchboard/testing";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFairShare, PageOverRateError } from "./fair-share";
import { createPageRouterMetrics } from "./metrics";
import { normaliseEntry } from "./normalise";

const log = createLogger({ service: "page-router-test", level: process.env.TEST_LOG_LEVEL ?? "silent" });
const PAGE = "404217156637689";

/** What `admit` reads of an entry: a first delivery. */
const firstDelivery = { info: { deliveryCount: 1 } } as JsMsg;

const untilReady = (client: Redis) =>
  new Promise<void>((resolve) => {
    if (client.status === "ready") resolve();
    else client.once("ready", () => resolve());
  });

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

  const fairShare = (redis: Redis) =>
    createFairShare({
      bus,
      redis,
      keyPrefix: `${uniqueId()}:`,
      settings: {
        ratePerSecond: 1,
        burst: 2,
        overrides: new Map(),
        psidFloodThreshold: 3,
        psidFloodWindowMs: 60_000,
      },
      metrics: createPageRouterMetrics(createMetricsRegistry("page-router")),
      log,
    });

  /** How many of `count` first deliveries pass before the page's entries are delayed. */
  const admitted = async (share: ReturnType<typeof fairShare>, count: number) => {
    let passed = 0;
    for (let i = 0; i < count; i++) {
      const delayed = await share.admit(firstDelivery, PAGE).then(
        () => false,
        (error: unknown) => {
          if (!(error instanceof PageOverRateError)) throw error;
          return true;
        },
      );
      if (!delayed) passed++;
    }
    return passed;
  };

  it("keeps shaping a page and flagging floods with node 0 killed, and says ready throughout", async () => {
    const redis = createFailoverRedis(nodes, log);
    const share = fairShare(redis);
    const ready = redisReadiness(redis, { cacheMs: 0 });

    // At 1/s with a burst of 2, three entries pass at once and the rest are delayed.
    expect(await admitted(share, 6)).toBe(3);
    expect(await ready.check()).toBe(true);

    await cluster.nodes[0]!.kill();
    // Node 1 starts the page's schedule afresh (one extra burst), then shapes it as before.
    expect(await admitted(share, 6)).toBe(3);
    expect(await ready.check()).toBe(true);

    const psid = "1423587017700273";
    const events = normaliseEntry(
      {
        id: PAGE,
        time: Date.now(),
        messaging: [1, 2, 3].map(() => buildTextMessageItem({ pageId: PAGE, psid })),
      },
      { pageId: PAGE, companyId: "acme", traceId: "trace", receivedAt: Date.now() },
    );
    await share.account(PAGE, events);
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
