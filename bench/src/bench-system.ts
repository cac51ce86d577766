import { type Bus, connectBus } from "@switchboard/bus";
import { createTokenCipher } from "@switchboard/crypto";
import { applyMigrations, createDb, type Db } from "@switchboard/db";
import { fakeMetaControl } from "@switchboard/fake-meta";
import { type LocalSystem, type ServiceProcess, startLocalSystem, uniqueId } from "@switchboard/local-system";
import { connectPage } from "@switchboard/pages";
import pg from "pg";
import { logDir, quiet, services } from "./system";

/** The services a message passes through, in order. The subscription-service is not on that path. */
const PIPELINE = ["ingress", "page-router", "message-service"] as const;

export interface BenchSystem {
  env: Record<string, string>;
  appSecret: string;
  ingressUrl: string;
  fakeMetaUrl: string;
  processes: ServiceProcess[];
  /** Queries the bench's own database (row counts, latencies). */
  sql: pg.Pool;
  messageServiceUrl: string;
  /** The run's bus (its streams: dead letters, unrouted). */
  bus: Bus;
  connectPages(pageIds: string[]): Promise<void>;
  addUsers(users: Array<{ pageId: string; psid: string }>): Promise<void>;
  stop(): Promise<void>;
}

async function inBatches<T>(items: T[], size: number, run: (item: T) => Promise<unknown>) {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(run));
}

/**
 * Fake Meta, ingress, page-router and message-service as production processes (`node dist/main.js`)
 * on the local Postgres, Redis and NATS, with their own database, bus namespace and key prefix.
 */
export async function startBenchSystem(nodeFlags: string[] = []): Promise<BenchSystem> {
  const system: LocalSystem<Db> = await startLocalSystem({
    stores: services,
    migrate: applyMigrations,
    connectDb: (url) => createDb(url),
    apps: PIPELINE,
    runId: uniqueId("b"),
    databasePrefix: "sb_bench_",
    nodeFlags,
    logDir,
    env: {
      // Production's level: the cost of logging is part of the cost of a message.
      LOG_LEVEL: "info",
      FAKE_META_ECHO_MODE: "off",
      // Meta's quota is not what is measured: every profile fetch of a new contact goes through at once.
      GRAPH_CALLS_PER_PAGE: "1000000",
    },
  });
  const { env, db, urls } = system;
  let bus: Bus | undefined;
  let sql: pg.Pool | undefined;
  const stop = async () => {
    await bus?.drain();
    await sql?.end();
    await system.stop();
  };
  try {
    sql = new pg.Pool({ connectionString: system.databaseUrl, max: 2 });
    bus = await connectBus({
      streams: "provision",
      servers: [services.natsUrl],
      name: "bench-pages",
      namespace: system.runId,
      log: quiet,
    });
  } catch (error) {
    await stop();
    throw error;
  }
  const cipher = createTokenCipher(env.TOKEN_ENCRYPTION_KEYS!);
  const pagesBus = bus;
  const fakeMetaUrl = urls["fake-meta"];
  const fakeMeta = fakeMetaControl(fakeMetaUrl, system.fakeMetaControlToken);
  const register = async (path: string, body: unknown) => {
    const res = await fakeMeta(path, body);
    if (!res.ok) throw new Error(`fake Meta ${path}: ${res.status} ${await res.text()}`);
  };
  return {
    env,
    appSecret: env.FB_APP_SECRET!,
    ingressUrl: `${urls.ingress}/webhooks/facebook`,
    fakeMetaUrl,
    processes: Object.values(system.processes),
    sql,
    messageServiceUrl: urls["message-service"],
    bus: pagesBus,
    async connectPages(pageIds) {
      await inBatches(pageIds, 20, async (pageId) => {
        const token = `EAAB-bench-${pageId}`;
        await register("/pages", { pageId, token, name: `Bench page ${pageId}` });
        await connectPage(
          { db, bus: pagesBus, cipher },
          { pageId, name: `Bench page ${pageId}`, companyId: "bench", token },
        );
      });
    },
    async addUsers(users) {
      await inBatches(users, 50, (user) => register("/users", user));
    },
    stop,
  };
}
