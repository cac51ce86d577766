import { connect as connectTcp, createServer, type Server, type Socket } from "node:net";
import { type Bus, connectBus, deleteStreams } from "@switchboard/bus";
import type { ReconcileJob } from "@switchboard/contracts";
import { createTokenCipher, generateTokenKey } from "@switchboard/crypto";
import { applyMigrations, createDb, type Db } from "@switchboard/db";
import { createFakeMeta, type FakeMeta, type RunningFakeMeta } from "@switchboard/fake-meta";
import { createGraphClient, type GraphClient } from "@switchboard/graph-api";
import { createLogger, createMetricsRegistry, type Registry } from "@switchboard/observability";
import { connectPage } from "@switchboard/pages";
import {
  DEFAULT_SUBSCRIBED_FIELDS,
  INSTAGRAM_DEFAULT_SUBSCRIBED_FIELDS,
  type SubscriptionContext,
} from "@switchboard/subscriptions";
import { createTestDatabase, type TestDatabase, testServices, uniqueId } from "@switchboard/testing";
import { Redis } from "ioredis";
import { createSubscriptionMetrics, recordGraphCall, type SubscriptionMetrics } from "./metrics";
import { startSubscriptionService } from "./service";

export const APP_ID = "100000000000001";
export const APP_SECRET = "test-app-secret";
const log = createLogger({
  service: "subscription-service-test",
  level: (process.env.TEST_LOG_LEVEL ?? "silent") as "silent",
});

/**
 * A TCP relay in front of the test PostgreSQL that can stop answering, as a stalled or partitioned
 * database does: connections stay open, queries get no reply. `resume` resets the stalled connections
 * (what a restarted server's clients see) and relays again.
 */
export async function createDatabaseGate(databaseUrl: string) {
  const target = new URL(databaseUrl);
  const sockets = new Set<Socket>();
  let stalled = false;
  const relay = (client: Socket) => {
    const server = connectTcp(Number(target.port || 5432), target.hostname);
    sockets.add(server);
    server.on("close", () => sockets.delete(server));
    const forward = (from: Socket, to: Socket) =>
      from.on("data", (chunk) => {
        // Stalled: swallow what either side says, as a partition does.
        if (!stalled) to.write(chunk);
      });
    forward(client, server);
    forward(server, client);
    const end = () => {
      client.destroy();
      server.destroy();
    };
    client.on("close", end).on("error", end);
    server.on("close", end).on("error", end);
  };
  const listener: Server = createServer((client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    // Stalled: the connection is accepted and never answered.
    if (!stalled) relay(client);
  });
  await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
  const url = new URL(databaseUrl);
  url.hostname = "127.0.0.1";
  url.port = String((listener.address() as { port: number }).port);
  return {
    url: url.toString(),
    stall() {
      stalled = true;
    },
    resume() {
      stalled = false;
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => listener.close(resolve));
    },
  };
}
export type DatabaseGate = Awaited<ReturnType<typeof createDatabaseGate>>;

export interface Replica {
  name: string;
  bus: Bus;
  registry: Registry;
  metrics: SubscriptionMetrics;
  reconciled: ReconcileJob[];
  stop(): Promise<void>;
}

/**
 * Real Postgres (own database), Redis (own key prefix), NATS (own namespace per `startNamespace`) and an
 * in-process fake Meta; replicas of the service are started in-process over their own bus connections.
 */
export async function createHarness() {
  const database: TestDatabase = await createTestDatabase(applyMigrations);
  const db: Db = createDb(database.url, { poolSize: 6 });
  const redis = new Redis(testServices().redisUrl);
  const cipher = createTokenCipher(generateTokenKey("k1"));
  const fake: FakeMeta = createFakeMeta({
    appSecret: APP_SECRET,
    appId: APP_ID,
    ingressUrl: "http://127.0.0.1:9/unused",
  });
  const meta: RunningFakeMeta = await fake.listen(0);
  const graph: GraphClient = createGraphClient({
    baseUrl: meta.url,
    version: "v21.0",
    appSecret: APP_SECRET,
    timeoutMs: 3000,
    maxRetries: 0,
  });
  let namespace = uniqueId("sub");
  let keyPrefix = `${uniqueId()}:`;
  const buses: Bus[] = [];
  const replicas: Replica[] = [];
  /** Databases and gates of single tests, closed once the replicas using them have stopped. */
  const closers: Array<() => Promise<unknown>> = [];

  const connect = async (name: string) => {
    const bus = await connectBus({
      streams: "provision",
      servers: [testServices().natsUrl],
      name,
      namespace,
      log,
    });
    buses.push(bus);
    return bus;
  };
  // The CLI's and tests' own connection, for connecting pages.
  let control = await connect("control");

  const context = (bus: Bus, graphClient: GraphClient = graph, replicaDb: Db = db): SubscriptionContext => ({
    db: replicaDb,
    bus,
    cipher,
    graph: graphClient,
    appId: APP_ID,
    desiredFields: DEFAULT_SUBSCRIBED_FIELDS,
    instagram: {
      graph: createGraphClient({
        platform: "instagram",
        baseUrl: meta.instagramUrl,
        version: "v21.0",
        appSecret: APP_SECRET,
        timeoutMs: 3000,
        maxRetries: 0,
      }),
      appId: APP_ID,
      desiredFields: INSTAGRAM_DEFAULT_SUBSCRIBED_FIELDS,
    },
    failureThreshold: 3,
    log,
  });

  return {
    db,
    redis,
    cipher,
    fake,
    meta,
    graph,
    log,
    context,
    get control() {
      return control;
    },
    get keyPrefix() {
      return keyPrefix;
    },

    /** A database client for one replica that reaches PostgreSQL through a gate the test can stall. */
    async gatedDatabase() {
      const gate = await createDatabaseGate(database.url);
      const gated = createDb(gate.url, { poolSize: 4 });
      closers.push(
        () => gated.$disconnect(),
        () => gate.close(),
      );
      return { gate, db: gated };
    },

    /** A replica; `db` replaces the shared database client (a failing one), for this replica only. */
    async startReplica(
      name: string,
      {
        intervalMs = 3_600_000,
        db: replicaDb = db,
        handlerTimeoutMs = 20_000,
      }: { intervalMs?: number; db?: Db; handlerTimeoutMs?: number } = {},
    ): Promise<Replica> {
      const bus = await connect(name);
      const registry = createMetricsRegistry("subscription-service");
      const metrics = createSubscriptionMetrics(registry);
      const replicaGraph = createGraphClient({
        baseUrl: meta.url,
        version: "v21.0",
        appSecret: APP_SECRET,
        timeoutMs: 3000,
        maxRetries: 0,
        onCall: recordGraphCall(metrics),
      });
      const reconciled: ReconcileJob[] = [];
      const service = await startSubscriptionService({
        bus,
        db: replicaDb,
        redis,
        keyPrefix,
        subscriptions: context(bus, replicaGraph, replicaDb),
        metrics,
        log,
        intervalMs,
        concurrency: 4,
        maxBackoffMs: 60_000,
        handlerTimeoutMs,
        onReconciled: (job) => reconciled.push(job),
      });
      const replica = { name, bus, registry, metrics, reconciled, stop: () => service.stop() };
      replicas.push(replica);
      return replica;
    },

    /** Connects a page the way `pnpm sb pages connect` does, after Meta knows its token. */
    async connectPage(
      pageId: string,
      token = `EAAB-${pageId}-${uniqueId()}`,
      platform: "messenger" | "instagram" = "messenger",
    ) {
      fake.state.addPage({ pageId, token, name: `Page ${pageId}`, platform });
      await connectPage(
        { db, bus: control, cipher },
        { pageId, name: `Page ${pageId}`, companyId: "acme", token, platform },
      );
      return token;
    },

    /** Stops every replica and gives the next test an empty world. */
    async reset() {
      await Promise.all(replicas.splice(0).map((r) => r.stop()));
      for (const close of closers.splice(0)) await close();
      for (const bus of buses.splice(0)) {
        await deleteStreams(bus.jsm, bus.topology);
        await bus.drain();
      }
      await db.$executeRawUnsafe("TRUNCATE page_subscriptions, page_connections CASCADE");
      fake.state.reset();
      namespace = uniqueId("sub");
      keyPrefix = `${uniqueId()}:`;
      control = await connect("control");
    },

    async close() {
      await Promise.all(replicas.splice(0).map((r) => r.stop()));
      for (const close of closers.splice(0)) await close().catch(() => undefined);
      for (const bus of buses.splice(0)) {
        await deleteStreams(bus.jsm, bus.topology).catch(() => undefined);
        await bus.drain();
      }
      await meta.close();
      await db.$disconnect();
      redis.disconnect();
      await database.drop();
    },
  };
}
export type Harness = Awaited<ReturnType<typeof createHarness>>;
