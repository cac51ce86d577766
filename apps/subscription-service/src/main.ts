import { connectBus } from "@switchboard/bus";
import { loadConfig } from "@switchboard/config";
import { createTokenCipher } from "@switchboard/crypto";
import { createDb, postgresAnswers } from "@switchboard/db";
import {
  closeServer,
  createLogger,
  createMetricsRegistry,
  createOpsApp,
  listen,
  onShutdown,
  redisReadiness,
  runMain,
} from "@switchboard/observability";
import { closeRedisNodes, connectRedisNodes, createFailoverRedis } from "@switchboard/redis-nodes";
import { platformSubscriptionsOf } from "@switchboard/subscriptions";
import { subscriptionConfigSchema } from "./config";

import { createSubscriptionMetrics, recordGraphCall } from "./metrics";
import { startSubscriptionService } from "./service";

runMain(async () => {
  const config = loadConfig(subscriptionConfigSchema);
  const log = createLogger({ service: "subscription-service", level: config.LOG_LEVEL });
  const registry = createMetricsRegistry("subscription-service");
  const metrics = createSubscriptionMetrics(registry);
  const db = createDb(config.DATABASE_URL);
  // Slot claims and back-offs are short-lived coordination, not locks: on the first REDIS_URL node that
  // is up (a claim lost with its node costs at most one repeated check).
  const redisNodes = connectRedisNodes(config.REDIS_URL, log, {
    connectionName: "subscription-service",
    enableOfflineQueue: false,
  });
  const redis = createFailoverRedis(redisNodes, log);
  const bus = await connectBus({
    servers: config.NATS_URL,
    name: "subscription-service",
    namespace: config.BUS_NAMESPACE,
    log,
  });
  const graphAttempts = 3;
  const platforms = platformSubscriptionsOf(config, {
    maxRetries: graphAttempts - 1,
    onCall: recordGraphCall(metrics),
  });
  const service = await startSubscriptionService({
    bus,
    db,
    redis,
    keyPrefix: config.REDIS_KEY_PREFIX,
    subscriptions: {
      db,
      bus,
      cipher: createTokenCipher(config.TOKEN_ENCRYPTION_KEYS),
      ...platforms,
      failureThreshold: config.RECONCILE_FAILURE_THRESHOLD,
      log,
    },
    metrics,
    log,
    intervalMs: config.RECONCILE_INTERVAL,
    concurrency: config.RECONCILE_CONCURRENCY,
    maxBackoffMs: config.RECONCILE_MAX_BACKOFF,
    instagramTokenRefreshBeforeMs: config.INSTAGRAM_TOKEN_REFRESH_BEFORE,
    // A check makes at most three Graph calls (read, subscribe, verify), each up to `graphAttempts` times
    // GRAPH_API_TIMEOUT; the margin covers PostgreSQL, Redis and the retries' pauses. Longer is hung.
    handlerTimeoutMs: 3 * graphAttempts * config.GRAPH_API_TIMEOUT + 15_000,
  });
  const app = createOpsApp({
    registry,
    checks: [
      { name: "nats", check: () => bus.isConnected() },
      {
        name: "postgres",
        check: async () => {
          await postgresAnswers(db);
          return true;
        },
      },
      redisReadiness(redis),
    ],
  });
  const server = await listen(app, config.PORT);
  log.info(
    {
      port: config.PORT,
      intervalMs: config.RECONCILE_INTERVAL,
      fields: config.SUBSCRIBED_FIELDS,
      instagramFields: config.INSTAGRAM_SUBSCRIBED_FIELDS,
    },
    "subscription-service running",
  );
  onShutdown(log, [
    { name: "stop HTTP", run: () => closeServer(server) },
    { name: "stop scheduling and consuming (finish in-flight checks)", run: () => service.stop() },
    { name: "drain NATS", run: () => bus.drain() },
    {
      name: "close Postgres and Redis",
      run: () => Promise.all([db.$disconnect(), closeRedisNodes(redisNodes)]),
    },
  ]);
});
