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
  runMain,
} from "@switchboard/observability";
import { dispatcherConfigSchema } from "./config";
import { startDispatcher } from "./dispatcher";
import { createDispatcherMetrics } from "./metrics";

runMain(async () => {
  const config = loadConfig(dispatcherConfigSchema);
  const log = createLogger({ service: "webhook-dispatcher", level: config.LOG_LEVEL });
  const registry = createMetricsRegistry("webhook-dispatcher");
  const metrics = createDispatcherMetrics(registry);
  const db = createDb(config.DATABASE_URL);
  const bus = await connectBus({
    servers: config.NATS_URL,
    name: "webhook-dispatcher",
    namespace: config.BUS_NAMESPACE,
    log,
  });
  if (config.WEBHOOK_ALLOW_PRIVATE_TARGETS) {
    log.warn(
      "WEBHOOK_ALLOW_PRIVATE_TARGETS=true: http and private targets are allowed (never in production)",
    );
  }
  const dispatcher = await startDispatcher({
    bus,
    db,
    cipher: createTokenCipher(config.TOKEN_ENCRYPTION_KEYS),
    log,
    metrics,
    policy: { allowPrivateTargets: config.WEBHOOK_ALLOW_PRIVATE_TARGETS },
    settings: {
      schedule: config.WEBHOOK_RETRY_SCHEDULE,
      timeoutMs: config.WEBHOOK_TIMEOUT,
      disableAfterMs: config.WEBHOOK_DISABLE_AFTER,
      maxInFlight: config.WEBHOOK_MAX_IN_FLIGHT,
      endpointConcurrency: config.WEBHOOK_ENDPOINT_CONCURRENCY,
      circuitThreshold: config.WEBHOOK_CIRCUIT_THRESHOLD,
      circuitOpenMs: config.WEBHOOK_CIRCUIT_OPEN,
      pollIntervalMs: config.WEBHOOK_POLL_INTERVAL,
      retentionMs: config.WEBHOOK_DELIVERY_RETENTION,
      fanOutConcurrency: config.WEBHOOK_FAN_OUT_CONCURRENCY,
    },
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
    ],
  });
  const server = await listen(app, config.PORT);
  log.info({ port: config.PORT, namespace: config.BUS_NAMESPACE }, "webhook-dispatcher running");
  onShutdown(log, [
    { name: "stop HTTP", run: () => closeServer(server) },
    // Attempts in flight finish and are recorded; an interrupted one is attempted again after its lease.
    { name: "stop fan-out and deliveries", run: () => dispatcher.stop() },
    { name: "drain NATS", run: () => bus.drain() },
    { name: "close Postgres", run: () => db.$disconnect() },
  ]);
});
