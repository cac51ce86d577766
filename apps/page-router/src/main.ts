import { connectBus } from "@switchboard/bus";
import { graphHostsOf } from "@switchboard/config";
import { createTokenCipher } from "@switchboard/crypto";
import { createDb, postgresAnswers } from "@switchboard/db";
import {
  closeServer,
  createLogger,
  createMetricsRegistry,
  createOpsApp,
  listen,
  onShutdown,
  runMain,
} from "@switchboard/observability";
import { closeRedisNodes, connectRedisNodes, createFailoverRedis } from "@switchboard/redis-nodes";
import { loadPageRouterConfig } from "./config";
import { createPageRouterMetrics } from "./metrics";
import { pageRouterReadiness } from "./readiness";
import { startPageRouter } from "./router";

runMain(async () => {
  const config = loadPageRouterConfig();
  const log = createLogger({ service: "page-router", level: config.LOG_LEVEL });
  const cipher = createTokenCipher(config.TOKEN_ENCRYPTION_KEYS);
  const db = createDb(config.DATABASE_URL);
  // Fair share, profiles, flood detection and Graph rate limits, none of them a lock: on the first
  // REDIS_URL node that is up, so losing one costs restarted counters, never a message. Fail fast.
  const redisNodes = connectRedisNodes(config.REDIS_URL, log, {
    connectionName: "page-router",
    enableOfflineQueue: false,
    autoPipelining: true,
  });
  const redis = createFailoverRedis(redisNodes, log);
  const bus = await connectBus({
    servers: config.NATS_URL,
    name: "page-router",
    namespace: config.BUS_NAMESPACE,
    log,
  });
  const registry = createMetricsRegistry("page-router");
  const metrics = createPageRouterMetrics(registry);

  const router = await startPageRouter({
    bus,
    db,
    redis,
    cipher,
    log,
    metrics,
    // Routing cannot go without PostgreSQL (the page directory). Redis is left out on purpose: without it
    // entries are routed unshaped and without profiles, so its outage must not pause the router.
    probeDependencies: () => postgresAnswers(db),
    settings: {
      consumer: {
        concurrency: config.ROUTER_CONCURRENCY,
        maxAckPending: config.ROUTER_MAX_ACK_PENDING,
        // An entry waits for PostgreSQL, Redis (1 s per command), one profile lookup and its publishes.
        handlerTimeoutMs: config.PROFILE_TIMEOUT + 30_000,
      },
      pages: {
        cacheTtlMs: config.PAGE_CACHE_TTL,
        unroutedSweepIntervalMs: config.UNROUTED_SWEEP_INTERVAL,
      },
      profiles: {
        graph: graphHostsOf(config),
        staleAfterMs: config.PROFILE_STALE_AFTER,
        unavailableTtlMs: config.PROFILE_UNAVAILABLE_TTL,
        timeoutMs: config.PROFILE_TIMEOUT,
        callsPerPage: config.GRAPH_CALLS_PER_PAGE,
        callsWindowMs: config.GRAPH_CALLS_WINDOW,
        usageBackoffPercent: config.GRAPH_USAGE_BACKOFF_PERCENT,
        backoffMs: config.GRAPH_BACKOFF,
      },
      keyPrefix: config.REDIS_KEY_PREFIX,
      canaryPageId: config.CANARY_PAGE_ID,
      fairShare: {
        ratePerSecond: config.PAGE_MESSAGE_RATE,
        burst: config.PAGE_MESSAGE_BURST,
        overrides: config.PAGE_RATE_OVERRIDES,
        psidFloodThreshold: config.PSID_FLOOD_THRESHOLD,
        psidFloodWindowMs: config.PSID_FLOOD_WINDOW,
        maxDelayMs: config.PAGE_SHAPING_MAX_DELAY,
      },
    },
  });

  const server = await listen(
    createOpsApp({
      registry,
      checks: pageRouterReadiness({ bus, db, redis }),
    }),
    config.PORT,
  );
  log.info({ port: config.PORT, namespace: config.BUS_NAMESPACE }, "page-router started");

  onShutdown(log, [
    { name: "stop http", run: () => closeServer(server) },
    { name: "stop consumer", run: () => router.stop() },
    { name: "drain nats", run: () => bus.drain() },
    { name: "close postgres", run: () => db.$disconnect() },
    { name: "close redis", run: () => closeRedisNodes(redisNodes) },
  ]);
});
