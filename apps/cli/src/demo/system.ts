import { randomUUID } from "node:crypto";
import { applyMigrations, createDb, type Db } from "@switchboard/db";
import { type LocalSystem, startLocalSystem } from "@switchboard/local-system";

/** The stores the demo runs on: the laptop's Postgres, Redis and NATS (`.env.example`). */
export interface DemoStores {
  DATABASE_URL: string;
  REDIS_URL: string;
  NATS_URL: string;
}

export type DemoSystem = LocalSystem<Db>;

/**
 * Starts the fake Meta and the four services (built, `node dist/main.js`) on free ports, over a database,
 * bus namespace and Redis key prefix of their own, so the demo never touches a `pnpm dev` session's data.
 */
export function startDemoSystem(stores: DemoStores): Promise<DemoSystem> {
  // The database is created beside the dev one, from Postgres's own.
  const adminUrl = new URL(stores.DATABASE_URL);
  adminUrl.pathname = "/postgres";
  return startLocalSystem({
    stores: { databaseUrl: adminUrl.toString(), redisUrl: stores.REDIS_URL, natsUrl: stores.NATS_URL },
    migrate: applyMigrations,
    connectDb: (url) => createDb(url, { poolSize: 2 }),
    runId: `demo${Date.now().toString(36)}${randomUUID().slice(0, 4)}`,
    databasePrefix: "switchboard_",
    env: { LOG_LEVEL: "warn", FAKE_META_ECHO_MODE: "random" },
  });
}
