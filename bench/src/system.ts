import { join } from "node:path";
import { repoRoot } from "@switchboard/local-system";
import { createLogger } from "@switchboard/observability";

export const root = repoRoot;

/** The local Postgres, Redis and NATS (the same defaults as the test suite's global setup). */
export const services = {
  databaseUrl: process.env.DATABASE_URL || "postgresql://postgres@127.0.0.1:5432/postgres",
  redisUrl: process.env.REDIS_URL || "redis://127.0.0.1:6379",
  natsUrl: process.env.NATS_URL || "nats://127.0.0.1:4222",
};

export const quiet = createLogger({ service: "bench", level: "silent" });

/** Every bench process logs to a file here, so logging costs the bench process nothing. */
export const logDir = join(root, "bench/results/tmp/logs");

export const logFile = (name: string) => join(logDir, `${name}.log`);
