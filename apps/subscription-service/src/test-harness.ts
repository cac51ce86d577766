import { type Bus, connectBus, deleteStreams } from "@switchboard/bus";
import type { ReconcileJob } from "@switchboard/contracts";
import { createTokenCipher, generateTokenKey } from "@switchboard/crypto";
import { applyMigrations, createDb, type Db } from "@switchboard/db";
import { createFakeMeta, type FakeMeta, type RunningFakeMeta } from "@switchboard/fake-meta";
import { createGraphClient, type GraphClient } from "@switchboard/graph-api";
import { createLogger, createMetricsRegistry, type Registry } from "@switchboard/observability";
import { connectPage } from "@switchboard/pages";
import { DEFAULT_SUBSCRIBED_FIELDS, type SubscriptionContext } from "@switchboard/subscriptions";
import { createTestDatabase, type TestDatabase, testServices, uniqueId } from "@switchboard/testing";
import { Redis } from "ioredis";
import { createSubscriptionMetrics, recordGraphCall, type SubscriptionMetrics } from "./metrics";
import { startSubscriptionService } from "./service";

export const APP_ID = "100000000000001";
export const APP_SECRET = "test-app-secret";
const log = createLogger({ service: "subscription-service-test", level: "silent" });

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

  const context = (bus: Bus, graphClient: GraphClient = graph): SubscriptionContext => ({
    db,
    bus,
    cipher,
    graph: graphClient,
    appId: APP_ID,
    desiredFields: DEFAULT_SUBSCRIBED_FIELDS,
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

    async startReplica(name: string, { intervalMs = 3_600_000 } = {}): Promise<Replica> {
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
        db,
        redis,
        keyPrefix,
        subscriptions: context(bus, replicaGraph),
        metrics,
        log,
        intervalMs,
        concurrency: 4,
        maxBackoffMs: 60_000,
        onReconciled: (job) => reconciled.push(job),
      });
      const replica = { name, bus, registry, metrics, reconciled, stop: () => service.stop() };
      replicas.push(replica);
      return replica;
    },

    /** Connects a page the way `pnpm sb pages connect` does, after Meta knows its token. */
    async connectPage(pageId: string, token = `EAAB-${pageId}-${uniqueId()}`) {
      fake.state.addPage({ pageId, token, name: `Page ${pageId}` });
      await connectPage(
        { db, bus: control, cipher },
        { pageId, name: `Page ${pageId}`, companyId: "acme", token },
      );
      return token;
    },

    /** Stops every replica and gives the next test an empty world. */
    async reset() {
      await Promise.all(replicas.splice(0).map((r) => r.stop()));
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
