import { connectBus, type RunningConsumer } from "@switchboard/bus";
import { graphHostsOf } from "@switchboard/config";
import { createTokenCipher } from "@switchboard/crypto";
import { createDb, postgresAnswers } from "@switchboard/db";
import { createGraphClients } from "@switchboard/graph-api";
import {
  closeServer,
  createLogger,
  createMetricsRegistry,
  createOpsRouter,
  listen,
  onShutdown,
  runMain,
} from "@switchboard/observability";
import {
  closeRedisNodes,
  connectRedisNodes,
  createFailoverRedis,
  redisQuorumReady,
} from "@switchboard/redis-nodes";
import express from "express";
import { createConversationsApi } from "./api/router";
import { loadMessageServiceConfig } from "./config";
import { createConversationLock } from "./conversation-lock";
import { startOutboxRelay } from "./domain-events";
import { startMessagingConsumer } from "./messaging-consumer";
import { createMessageMetrics } from "./metrics";
import { startSendSweeper } from "./send/send-sweeper";
import { startSendWorker } from "./send/send-worker";

runMain(async () => {
  const config = loadMessageServiceConfig();
  const log = createLogger({ service: "message-service", level: config.LOG_LEVEL });
  const registry = createMetricsRegistry("message-service");
  const metrics = createMessageMetrics(registry);

  const db = createDb(config.DATABASE_URL, { poolSize: config.DATABASE_POOL_SIZE });
  const redis = connectRedisNodes(config.REDIS_URL, log, { connectionName: "message-service" });
  const bus = await connectBus({
    servers: config.NATS_URL,
    name: "message-service",
    namespace: config.BUS_NAMESPACE,
    log,
  });
  // One lock for every writer of a conversation in this process (messaging events and sends).
  const lock = createConversationLock({
    redis,
    keyPrefix: config.REDIS_KEY_PREFIX,
    ttlMs: config.CONVERSATION_LOCK_TTL,
    waitRetries: config.CONVERSATION_LOCK_WAIT_RETRIES,
    waitDelayMs: config.CONVERSATION_LOCK_WAIT_DELAY,
    retryLaterDelayMs: config.CONVERSATION_LOCK_RETRY_DELAY,
    log,
    registry,
  });

  // Asked by the consumers after a failure: if the database or the lock's Redis quorum is down they pause
  // (nothing is dead-lettered for an outage) and resume once this answers again.
  const probeDependencies = async () => {
    await postgresAnswers(db, 2000);
    if (!(await redisQuorumReady(redis))) throw new Error("no Redis quorum for the conversation lock");
  };

  const consumers: Array<Pick<RunningConsumer, "stop">> = [
    await startMessagingConsumer({
      bus,
      db,
      lock,
      log,
      metrics,
      concurrency: config.MESSAGE_CONCURRENCY,
      batchSize: config.MESSAGE_BATCH_SIZE,
      batchWaitMs: config.MESSAGE_BATCH_WAIT,
      maxLockAttempts: config.CONVERSATION_LOCK_MAX_ATTEMPTS,
      probeDependencies,
      handlerTimeoutMs: config.HANDLER_TIMEOUT,
      appId: config.FB_APP_ID,
      cipher: createTokenCipher(config.TOKEN_ENCRYPTION_KEYS),
    }),
    await startSendWorker({
      bus,
      db,
      lock,
      graphs: createGraphClients(graphHostsOf(config), { timeoutMs: config.GRAPH_TIMEOUT }),
      graphTimeoutMs: config.GRAPH_TIMEOUT,
      giveUpAfterMs: config.SEND_GIVE_UP_AFTER,
      probeDependencies,
      cipher: createTokenCipher(config.TOKEN_ENCRYPTION_KEYS),
      // The send schedule is not a lock: it lives on the first node that is up, not on a majority.
      redis: createFailoverRedis(redis, log),
      redisKeyPrefix: config.REDIS_KEY_PREFIX,
      log,
      registry,
      ratePerPagePerSecond: config.SEND_RATE_PER_PAGE,
      concurrency: config.SEND_CONCURRENCY,
      maxAttempts: config.SEND_MAX_ATTEMPTS,
      echoWaitMs: config.SEND_ECHO_WAIT,
    }),
  ];
  const sendSweeper = startSendSweeper({
    db,
    bus,
    log,
    intervalMs: config.SEND_SWEEP_INTERVAL,
    staleAfterMs: config.SEND_STALE_AFTER,
  });
  const outboxRelay = startOutboxRelay({
    js: bus.js,
    db,
    log,
    intervalMs: config.OUTBOX_SWEEP_INTERVAL,
    onPublished: (type) => metrics.domainEventsPublished.inc({ type }),
  });

  const app = express();
  app.disable("x-powered-by");
  app.use(
    createConversationsApi({
      db,
      bus,
      log,
      metrics: registry,
      webhooks: {
        cipher: createTokenCipher(config.TOKEN_ENCRYPTION_KEYS),
        policy: { allowPrivateTargets: config.WEBHOOK_ALLOW_PRIVATE_TARGETS },
      },
    }),
  );
  app.use(
    createOpsRouter({
      registry,
      checks: [
        {
          name: "db",
          check: async () => {
            await db.$queryRaw`SELECT 1`;
            return true;
          },
        },
        { name: "redis", check: () => redisQuorumReady(redis) },
        { name: "bus", check: () => bus.isConnected() },
      ],
    }),
  );
  const server = await listen(app, config.PORT);
  log.info({ port: config.PORT, namespace: config.BUS_NAMESPACE }, "message-service listening");

  onShutdown(log, [
    { name: "stop HTTP", run: () => closeServer(server) },
    // Handlers in flight finish (commit, publish, ack) before the bus drains.
    { name: "stop consumers", run: () => Promise.all(consumers.map((c) => c.stop())) },
    { name: "stop outbox relay", run: () => outboxRelay.stop() },
    { name: "stop send sweeper", run: () => sendSweeper.stop() },
    { name: "drain NATS", run: () => bus.drain() },
    { name: "close Redis", run: () => closeRedisNodes(redis) },
    { name: "close database", run: () => db.$disconnect() },
  ]);
});
