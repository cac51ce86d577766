import { createHash, randomUUID } from "node:crypto";
import { type Bus, connectBus, deleteStreams, listStored, publishRaw } from "@switchboard/bus";
import { buildTextMessageItem, Headers, type MessagingEvent } from "@switchboard/contracts";
import { createTokenCipher, generateTokenKey } from "@switchboard/crypto";
import { applyMigrations, createDb, type Db } from "@switchboard/db";
import { createFakeMeta, type FakeMeta, type RunningFakeMeta } from "@switchboard/fake-meta";
import { createLogger, createMetricsRegistry, createOpsApp } from "@switchboard/observability";
import { connectPage } from "@switchboard/pages";
import {
  createTestDatabase,
  eventually,
  type TestDatabase,
  testServices,
  uniqueId,
} from "@switchboard/testing";
import { Redis } from "ioredis";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPageRouterMetrics } from "./metrics";
import { pageRouterReadiness } from "./readiness";
import { type RunningPageRouter, startPageRouter } from "./router";

const APP_SECRET = "router-failure-test-secret";
const cipher = createTokenCipher(generateTokenKey("k1"));
const log = createLogger({ service: "page-router-test", level: process.env.TEST_LOG_LEVEL ?? "silent" });
const decoder = new TextDecoder();

/** A database whose page lookups fail for the pages in `failing` (an outage seen by the router only). */
function flakyDb(db: Db, failing: Map<string, number>): Db {
  const pageConnection = new Proxy(db.pageConnection, {
    get(target, property) {
      const value = Reflect.get(target, property, target);
      if (property !== "findUnique") return value;
      return async (args: { where: { pageId: string } }) => {
        const left = failing.get(args.where.pageId) ?? 0;
        if (left > 0) {
          failing.set(args.where.pageId, left - 1);
          throw new Error("connection terminated unexpectedly");
        }
        return value.call(target, args);
      };
    },
  });
  return new Proxy(db, {
    get: (target, property) =>
      property === "pageConnection" ? pageConnection : Reflect.get(target, property, target),
  });
}

describe("page-router failure policy", () => {
  let database: TestDatabase;
  let db: Db;
  let bus: Bus;
  let redis: Redis;
  let deadRedis: Redis;
  let meta: FakeMeta;
  let metaServer: RunningFakeMeta;
  let router: RunningPageRouter;
  const failing = new Map<string, number>();

  beforeAll(async () => {
    database = await createTestDatabase(applyMigrations);
    db = createDb(database.url);
    bus = await connectBus({
      streams: "provision",
      servers: [testServices().natsUrl],
      name: "router-failures",
      namespace: uniqueId(),
      log,
    });
    redis = new Redis(testServices().redisUrl);
    // Nothing listens there: every Redis command fails at once, as in a Redis outage.
    deadRedis = new Redis("redis://127.0.0.1:1", {
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      retryStrategy: () => 1000,
    });
    deadRedis.on("error", () => undefined);
    meta = createFakeMeta({ appSecret: APP_SECRET, appId: "1", ingressUrl: "http://127.0.0.1:9" });
    metaServer = await meta.listen(0);
    router = await startPageRouter({
      bus,
      db: flakyDb(db, failing),
      redis: deadRedis,
      cipher,
      log,
      metrics: createPageRouterMetrics(createMetricsRegistry("page-router")),
      settings: {
        consumer: {
          concurrency: 4,
          maxTransientAttempts: 3,
        },
        pages: {
          cacheTtlMs: 60_000,
          unroutedSweepIntervalMs: 60_000,
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
          timeoutMs: 1_000,
          callsPerPage: 100,
          callsWindowMs: 10_000,
          usageBackoffPercent: 90,
          backoffMs: 60_000,
        },
        keyPrefix: `${uniqueId()}:`,
      },
    });
  });

  afterAll(async () => {
    await router.stop();
    await deleteStreams(bus.jsm, bus.topology);
    await bus.drain();
    await redis.quit();
    deadRedis.disconnect();
    await metaServer.close();
    await db.$disconnect();
    await database.drop();
  });

  const connect = async (pageId: string) => {
    const token = `EAAB-${randomUUID()}`;
    meta.state.addPage({ pageId, token });
    await connectPage({ db, bus, cipher }, { pageId, name: pageId, companyId: "acme", token });
  };

  const publishEntry = async (pageId: string, psid: string) => {
    const data = JSON.stringify({
      id: pageId,
      time: Date.now(),
      messaging: [buildTextMessageItem({ pageId, psid })],
    });
    await publishRaw(bus.js, bus.topology.subjects.webhookEntry(pageId), data, {
      msgId: createHash("sha256").update(data).digest("base64url"),
      headers: { [Headers.traceId]: randomUUID(), [Headers.receivedAt]: Date.now() },
    });
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

  it("redelivers an entry through a database outage and routes it once the database answers", async () => {
    await connect("1001");
    failing.set("1001", 2);
    await publishEntry("1001", "5001");
    const [event] = await eventually(async () => {
      const events = await eventsOf("1001");
      return events.length === 1 && events;
    });
    expect(event).toMatchObject({ kind: "message", psid: "5001" });
    expect(failing.get("1001")).toBe(0);
  });

  it("publishes the message without a profile when Redis is down", async () => {
    await connect("2001");
    meta.state.addUser({ pageId: "2001", psid: "6001" });
    await publishEntry("2001", "6001");
    const [event] = await eventually(async () => {
      const events = await eventsOf("2001");
      return events.length === 1 && events;
    });
    expect(event).toMatchObject({ kind: "message", profile: null, profileStatus: "unavailable" });
  });

  it("says not ready on /readyz while Redis is unreachable, ready with it", async () => {
    const readyz = (redisClient: Redis) =>
      request(
        createOpsApp({
          registry: createMetricsRegistry("page-router"),
          checks: pageRouterReadiness({ bus, db, redis: redisClient }),
        }),
      ).get("/readyz");
    const down = await readyz(deadRedis);
    expect(down.status).toBe(503);
    expect(down.body.checks).toEqual([
      { name: "nats", ok: true },
      { name: "postgres", ok: true },
      { name: "redis", ok: false },
    ]);
    expect((await readyz(redis)).status).toBe(200);
  });

  it("dead-letters an entry that keeps failing, with the reason, after a bounded number of tries", async () => {
    await connect("3001");
    failing.set("3001", 1000);
    await publishEntry("3001", "7001");
    const [dead] = await eventually(async () => {
      const stored = await listStored(bus.js, bus.jsm, bus.topology.streams.deadLetter.name);
      return stored.length === 1 && stored;
    });
    expect(dead!.reason).toBe("failed 3 times: connection terminated unexpectedly");
    expect(dead!.headers[Headers.stage]).toBe("page-router");
    expect(dead!.headers[Headers.originalSubject]).toBe(bus.topology.subjects.webhookEntry("3001"));
    expect(await eventsOf("3001")).toEqual([]);
  });
});
