import { type Bus, connectBus } from "@switchboard/bus";
import { env, loadConfig } from "@switchboard/config";
import { createTokenCipher, type TokenCipher } from "@switchboard/crypto";
import { createDb, type Db } from "@switchboard/db";
import { createLogger, type Logger } from "@switchboard/observability";
import { z } from "zod";

export const cliConfigSchema = z.object({
  DATABASE_URL: env.databaseUrl(),
  NATS_URL: env.natsUrl(),
  BUS_NAMESPACE: env.busNamespace(),
  TOKEN_ENCRYPTION_KEYS: env.secret(10),
  LOG_LEVEL: env.logLevel().default("warn"),
});

/**
 * What a command needs, built on first use and closed once at exit, so `pages list` does not wait for
 * NATS and a bad variable is reported only by the commands that need it.
 */
export interface CliContext {
  config(): z.infer<typeof cliConfigSchema>;
  db(): Db;
  bus(): Promise<Bus>;
  cipher(): TokenCipher;
  log(): Logger;
  close(): Promise<void>;
}

export function createCliContext(environment: Record<string, string | undefined> = process.env): CliContext {
  let config: z.infer<typeof cliConfigSchema> | undefined;
  let db: Db | undefined;
  let bus: Promise<Bus> | undefined;
  let cipher: TokenCipher | undefined;
  let log: Logger | undefined;
  const context: CliContext = {
    config: () => {
      config ??= loadConfig(cliConfigSchema, environment);
      return config;
    },
    db: () => {
      db ??= createDb(context.config().DATABASE_URL, { poolSize: 4 });
      return db;
    },
    bus: () => {
      bus ??= connectBus({
        servers: context.config().NATS_URL,
        name: "switchboard-cli",
        namespace: context.config().BUS_NAMESPACE,
        log: context.log(),
      });
      return bus;
    },
    cipher: () => {
      cipher ??= createTokenCipher(context.config().TOKEN_ENCRYPTION_KEYS);
      return cipher;
    },
    log: () => {
      log ??= createLogger({ service: "cli", level: context.config().LOG_LEVEL });
      return log;
    },
    async close() {
      if (bus) await (await bus).drain();
      if (db) await db.$disconnect();
    },
  };
  return context;
}
