import type { Bus } from "@switchboard/bus";
import type { ReconcileJob } from "@switchboard/contracts";
import type { Db } from "@switchboard/db";
import type { SubscriptionContext } from "@switchboard/subscriptions";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { startLifecycleConsumer } from "./lifecycle";
import { refreshSubscriptionGauges, type SubscriptionMetrics } from "./metrics";
import { startReconcileScheduler } from "./scheduler";
import { startReconcileWorker } from "./worker";

export interface SubscriptionServiceOptions {
  bus: Bus;
  db: Db;
  redis: Redis;
  keyPrefix: string;
  subscriptions: SubscriptionContext;
  metrics: SubscriptionMetrics;
  log: Logger;
  intervalMs: number;
  concurrency: number;
  maxBackoffMs: number;
  onReconciled?: (job: ReconcileJob) => void;
}

/**
 * One replica of the subscription service: follows page lifecycle events, schedules every active page's
 * check once per interval and works the shared reconcile queue. `stop` ends scheduling first, then lets
 * the consumers finish what they hold.
 */
export async function startSubscriptionService(options: SubscriptionServiceOptions) {
  const { bus, db, redis, keyPrefix, subscriptions, metrics, log } = options;
  const lifecycle = await startLifecycleConsumer({ bus, db, subscriptions, metrics, log });
  const worker = await startReconcileWorker({
    bus,
    db,
    redis,
    keyPrefix,
    subscriptions,
    metrics,
    log,
    concurrency: options.concurrency,
    maxBackoffMs: options.maxBackoffMs,
    ...(options.onReconciled ? { onReconciled: options.onReconciled } : {}),
  });
  const scheduler = startReconcileScheduler({
    bus,
    db,
    intervalMs: options.intervalMs,
    log,
    metrics,
    onSlot: () => refreshSubscriptionGauges(db, metrics),
  });
  return {
    async stop() {
      await scheduler.stop();
      await Promise.all([worker.stop(), lifecycle.stop()]);
    },
  };
}
