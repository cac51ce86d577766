import { type Bus, connectBus } from "@switchboard/bus";
import { env, loadConfig } from "@switchboard/config";
import { createTokenCipher, type TokenCipher } from "@switchboard/crypto";
import { createDb, type Db } from "@switchboard/db";
import { createLogger, type Logger } from "@switchboard/observability";
import {
  platformSubscriptionsOf,
  type SubscriptionContext,
  subscriptionEnvShape,
} from "@switchboard/subscriptions";
import { z } from "zod";

export const cliConfigSchema = z.object({
  DATABASE_URL: env.databaseUrl(),
  NATS_URL: env.natsUrl(),
  BUS_NAMESPACE: env.busNamespace(),
  TOKEN_ENCRYPTION_KEYS: env.secret(10),
  /** `webhooks create` accepts http and private targets (tests and laptops only). */
  WEBHOOK_ALLOW_PRIVATE_TARGETS: env.boolean(false),
  LOG_LEVEL: env.logLevel().default("warn"),
});

/** Only the commands that call Meta (`subscriptions …`) need these. */
export const graphConfigSchema = z.object(subscriptionEnvShape);

/** Each platform's Graph client, app and fields (Pages on graph.facebook.com, Instagram accounts on graph.instagram.com). */
export type PlatformSubscriptions = Pick<
  SubscriptionContext,
  "graph" | "appId" | "desiredFields" | "instagram"
>;

/**
 * What a command needs, built on first use and closed once at exit, so `pages list` does not wait for
 * NATS and a bad variable is reported only by the commands that need it.
 */
export interface CliContext {
  config(): z.infer<typeof cliConfigSchema>;
  db(): Db;
  bus(): Promise<Bus>;
  cipher(): TokenCipher;
  graphConfig(): z.infer<typeof graphConfigSchema>;
  platforms(): PlatformSubscriptions;
  log(): Logger;
  /** A variable an operator names at run time (`pages connect --token-env VAR`), outside the schemas. */
  variable(name: string): string | undefined;
  close(): Promise<void>;
}

export function createCliContext(environment: Record<string, string | undefined> = process.env): CliContext {
  let config: z.infer<typeof cliConfigSchema> | undefined;
  let db: Db | undefined;
  let bus: Promise<Bus> | undefined;
  let cipher: TokenCipher | undefined;
  let log: Logger | undefined;
  let graphConfig: z.infer<typeof graphConfigSchema> | undefined;
  let platforms: PlatformSubscriptions | undefined;
  const context: CliContext = {
    variable: (name) => environment[name],
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
    graphConfig: () => {
      graphConfig ??= loadConfig(graphConfigSchema, environment);
      return graphConfig;
    },
    platforms: () => {
      platforms ??= platformSubscriptionsOf(context.graphConfig());
      return platforms;
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
