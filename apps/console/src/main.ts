import { connectBus } from "@switchboard/bus";
import { loadConfig } from "@switchboard/config";
import { createTokenCipher } from "@switchboard/crypto";
import { createDb } from "@switchboard/db";
import {
  closeServer,
  createLogger,
  createMetricsRegistry,
  listen,
  onShutdown,
  runMain,
} from "@switchboard/observability";
import { platformSubscriptionsOf } from "@switchboard/subscriptions";
import { createConsoleApp } from "./app";
import { createOperatorAuth } from "./auth";
import { createCanaryMetrics, startCanary } from "./canary";
import { consoleConfigSchema } from "./config";
import { registerJetStreamMetrics } from "./metrics";
import { createSessionRevocations } from "./sessions";

runMain(async () => {
  const config = loadConfig(consoleConfigSchema);
  const log = createLogger({ service: "console", level: config.LOG_LEVEL });
  const registry = createMetricsRegistry("console");
  const db = createDb(config.DATABASE_URL, { poolSize: 4 });
  const bus = await connectBus({
    servers: config.NATS_URL,
    name: "console",
    namespace: config.BUS_NAMESPACE,
    log,
  });
  const cipher = createTokenCipher(config.TOKEN_ENCRYPTION_KEYS);
  const platforms = platformSubscriptionsOf(config);
  registerJetStreamMetrics({ registry, bus, log });
  const app = createConsoleApp({
    auth: createOperatorAuth({
      operatorToken: config.OPERATOR_TOKEN,
      sessionTtlMs: config.CONSOLE_SESSION_TTL,
      revocations: createSessionRevocations(db),
    }),
    overview: {
      db,
      bus,
      cipher,
      desiredFields: config.SUBSCRIBED_FIELDS,
      instagramDesiredFields: config.INSTAGRAM_SUBSCRIBED_FIELDS,
    },
    subscriptions: { db, bus, cipher, ...platforms, log },
    bus,
    log,
    registry,
    trustProxy: config.CONSOLE_TRUST_PROXY,
    ...(config.FB_APP_ID ? { ourAppId: config.FB_APP_ID } : {}),
    pageSize: config.CONSOLE_PAGE_SIZE,
    checks: [
      { name: "nats", check: () => bus.isConnected() },
      {
        name: "postgres",
        check: async () => {
          await db.$queryRaw`SELECT 1`;
          return true;
        },
      },
    ],
  });
  const canary =
    config.CANARY_INGRESS_URL && config.CANARY_PAGE_ID
      ? await startCanary({
          bus,
          metrics: createCanaryMetrics(registry),
          log,
          settings: {
            pageId: config.CANARY_PAGE_ID,
            ingressUrl: config.CANARY_INGRESS_URL,
            appSecret: config.FB_APP_SECRET,
            intervalMs: config.CANARY_INTERVAL,
            timeoutMs: config.CANARY_TIMEOUT,
          },
        })
      : undefined;
  if (!canary) log.warn("webhook canary off: set CANARY_INGRESS_URL and CANARY_PAGE_ID");
  const server = await listen(app, config.PORT);
  log.info({ port: config.PORT, namespace: config.BUS_NAMESPACE }, "console listening");
  onShutdown(log, [
    { name: "stop HTTP", run: () => closeServer(server) },
    { name: "stop the canary", run: async () => canary?.stop() },
    { name: "drain NATS", run: () => bus.drain() },
    { name: "close database", run: () => db.$disconnect() },
  ]);
});
