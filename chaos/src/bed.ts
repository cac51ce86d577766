import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { type Bus, connectBus } from "@switchboard/bus";
import { busTopology, newApiKey } from "@switchboard/contracts";
import { createTokenCipher } from "@switchboard/crypto";
import { applyMigrations, createDb, type Db } from "@switchboard/db";
import { type FakeMetaControl, fakeMetaControl } from "@switchboard/fake-meta";
import {
  ALL_SERVICES,
  type LocalSystem,
  type NatsCluster,
  type PrivatePostgres,
  type RedisNodes,
  type ServiceName,
  startLocalSystem,
  startNatsCluster,
  startPrivatePostgres,
  startRedisNodes,
  uniqueId,
} from "@switchboard/local-system";
import { createLogger } from "@switchboard/observability";
import { connectPage } from "@switchboard/pages";
import pg from "pg";
import { startWebhookReceiver, type WebhookReceiver } from "./webhook-receiver";

export interface BedOptions {
  pages: number;
  peoplePerPage: number;
  replicas?: number;
  logDir?: string;
  /** Settings the scenarios rely on (fair share low enough that a flood is 10× it on this machine). */
  env?: Record<string, string>;
}

export interface TestBed {
  cluster: NatsCluster;
  redis: RedisNodes;
  postgres: PrivatePostgres;
  system: LocalSystem<Db>;
  bus: Bus;
  sql: pg.Pool;
  control: FakeMetaControl;
  apiKey: string;
  pageIds: string[];
  people: Map<string, string[]>;
  appSecret: string;
  /** The product's endpoint, registered through `POST /v1/webhook-endpoints` for the bed's company. */
  receiver: WebhookReceiver;
  endpointId: string;
  /** The message-service replicas' URLs (the product's API), tried in turn. */
  apiUrls(): string[];
  stop(): Promise<void>;
}

export const quietLog = createLogger({ service: "chaos", level: "silent" });

/**
 * The production-shaped test bed: a 3-node NATS cluster with R3 streams, three independent Redis nodes,
 * a private PostgreSQL, two replicas of every service (the ingress behind a balancer), the fake Meta
 * sending echoes as Meta does, and the product's webhook endpoint receiving every change. Everything is a process this run owns: faults never touch the machine's
 * own services.
 */
export async function startTestBed(options: BedOptions): Promise<TestBed> {
  const cluster = await startNatsCluster();
  const redis = await startRedisNodes(3);
  const postgres = await startPrivatePostgres();
  let system: LocalSystem<Db> | undefined;
  let bus: Bus | undefined;
  let sql: pg.Pool | undefined;
  const receiver = await startWebhookReceiver();
  const stop = async () => {
    await bus?.drain().catch(() => undefined);
    await sql?.end().catch(() => undefined);
    await system?.stop().catch(() => undefined);
    await cluster.stop();
    await redis.stop();
    await postgres.stop();
    await receiver.close();
  };
  try {
    system = await startLocalSystem({
      stores: { databaseUrl: postgres.url, redisUrl: redis.url, natsUrl: cluster.url },
      migrate: applyMigrations,
      connectDb: (url) => createDb(url, { poolSize: 4 }),
      runId: uniqueId("c"),
      databasePrefix: "sb_chaos_",
      apps: ALL_SERVICES,
      replicas: options.replicas ?? 2,
      ...(options.logDir ? { logDir: options.logDir } : {}),
      env: {
        NATS_STREAM_REPLICAS: "3",
        FAKE_META_ECHO_MODE: "random",
        LOG_LEVEL: "warn",
        RECONCILE_INTERVAL: "2m",
        // The receiver answers a delivery in 50 ms and one request in ten with a 503: retries come soon.
        WEBHOOK_RETRY_SCHEDULE: "1s,2s,5s,10s,10s,10s,10s,10s,10s,10s",
        WEBHOOK_TIMEOUT: "5s",
        WEBHOOK_ENDPOINT_CONCURRENCY: "16",
        WEBHOOK_POLL_INTERVAL: "200ms",
        ...options.env,
      },
    });
    const env = system.env;
    sql = new pg.Pool({ connectionString: system.databaseUrl, max: 3 });
    bus = await connectBus({
      servers: cluster.url.split(","),
      name: "chaos",
      namespace: system.runId,
      log: quietLog,
    });
    const control = fakeMetaControl(system.urls["fake-meta"], system.fakeMetaControlToken);
    const cipher = createTokenCipher(env.TOKEN_ENCRYPTION_KEYS!);
    const pageIds = Array.from({ length: options.pages }, (_, i) => `95${String(i).padStart(13, "0")}`);
    const people = new Map<string, string[]>();
    for (let i = 0; i < pageIds.length; i += 20) {
      await Promise.all(
        pageIds.slice(i, i + 20).map(async (pageId) => {
          const token = `EAAB-chaos-${pageId}`;
          await expectOk(control("/pages", { pageId, token, name: `Chaos page ${pageId}` }));
          const psids = Array.from(
            { length: options.peoplePerPage },
            (_, p) => `86${pageId.slice(-10)}${String(p).padStart(3, "0")}`,
          );
          for (const psid of psids) await expectOk(control("/users", { pageId, psid, firstName: "Chaos" }));
          people.set(pageId, psids);
          await connectPage(
            { db: system!.db, bus: bus!, cipher },
            { pageId, name: `Chaos page ${pageId}`, companyId: "chaos", token },
          );
        }),
      );
    }
    const { key, keyHash, prefix } = newApiKey();
    await system.db.apiKey.create({ data: { companyId: "chaos", keyHash, prefix, name: "chaos" } });
    const registered = await fetch(`${system.urls["message-service"]}/v1/webhook-endpoints`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ url: receiver.url, description: "chaos product" }),
    });
    if (registered.status !== 201) {
      throw new Error(`POST /v1/webhook-endpoints: ${registered.status} ${await registered.text()}`);
    }
    const endpoint = (await registered.json()) as { id: string; secret: string };
    receiver.useSecret(endpoint.secret);
    const live = system;
    return {
      cluster,
      redis,
      postgres,
      system,
      bus,
      sql,
      control,
      apiKey: key,
      pageIds,
      people,
      appSecret: env.FB_APP_SECRET!,
      receiver,
      endpointId: endpoint.id,
      apiUrls: () =>
        (live.replicas["message-service"] ?? [])
          .filter((p) => p.process.exitCode === null && p.process.signalCode === null)
          .map((p) => p.url),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function expectOk(response: Promise<Response>) {
  const res = await response;
  if (!res.ok) throw new Error(`fake Meta control: ${res.status} ${await res.text()}`);
}

/** Every replica of every service answers /readyz 200. */
export async function allReady(bed: TestBed): Promise<boolean> {
  const urls = ALL_SERVICES.flatMap((app: ServiceName) => (bed.system.replicas[app] ?? []).map((p) => p.url));
  const answers = await Promise.all(
    urls.map((url) =>
      fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) })
        .then((r) => r.status === 200)
        .catch(() => false),
    ),
  );
  return answers.every(Boolean);
}

/** `num_replicas` of the run's streams (all 3 on a healthy bed). */
export async function runStreamReplicas(bed: TestBed): Promise<number[]> {
  const prefix = bed.system.runId.toUpperCase();
  return Object.entries(await bed.cluster.streamReplicas())
    .filter(([name]) => name.startsWith(prefix))
    .map(([, replicas]) => replicas);
}

/** Messages in a stream of the run (dead letters, unrouted) through a connection of its own. */
export async function streamMessages(bed: TestBed, stream: "deadLetter" | "unrouted"): Promise<number> {
  const nc = await connect({ servers: bed.cluster.url.split(","), name: "chaos-check" });
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(busTopology(bed.system.runId).streams[stream].name);
    return info.state.messages;
  } finally {
    await nc.close();
  }
}
