import type { Bus } from "@switchboard/bus";
import type { ReconcileJob } from "@switchboard/contracts";
import type { Db } from "@switchboard/db";
import type { SubscriptionContext } from "@switchboard/subscriptions";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { createPageBackoff } from "./backoff";
import { type ConsumerTuning, dependencyProbe } from "./dependencies";
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
  /**
   * Beyond this a lifecycle event's or a job's handler is hung and given up (retried): longer than a
   * page's slowest legitimate check, its Graph calls with their retries.
   */
  handlerTimeoutMs: number;
  /** Instagram tokens are refreshed once they expire within this (INSTAGRAM_TOKEN_REFRESH_BEFORE). Default 10 days. */
  instagramTokenRefreshBeforeMs?: number;
  now?: () => number;
  onReconciled?: (job: ReconcileJob) => void;
}

/**
 * One replica of the subscription service: follows page lifecycle events, schedules every active page's
 * check once per interval and works the shared reconcile queue. `stop` ends scheduling first, then lets
 * the consumers finish what they hold.
 */
export async function startSubscriptionService(options: SubscriptionServiceOptions) {
  const { bus, db, redis, keyPrefix, subscriptions, metrics, log } = options;
  const backoff = createPageBackoff({
    redis,
    keyPrefix,
    baseMs: options.intervalMs,
    maxBackoffMs: options.maxBackoffMs,
  });
  const probeDependencies = dependencyProbe({ db, redis });
  const tuning = (consumer: "lifecycle" | "reconcile"): ConsumerTuning => {
    metrics.consumerPaused.set({ consumer }, 0);
    return {
      probeDependencies,
      handlerTimeoutMs: options.handlerTimeoutMs,
      onPauseChange: (paused) => metrics.consumerPaused.set({ consumer }, paused ? 1 : 0),
    };
  };
  const lifecycle = await startLifecycleConsumer({
    bus,
    db,
    subscriptions,
    metrics,
    log,
    backoff,
    tuning: tuning("lifecycle"),
  });
  const worker = await startReconcileWorker({
    bus,
    db,
    redis,
    keyPrefix,
    subscriptions,
    metrics,
    log,
    concurrency: options.concurrency,
    backoff,
    tuning: tuning("reconcile"),
    instagramTokenRefreshBeforeMs: options.instagramTokenRefreshBeforeMs ?? 10 * 86_400_000,
    ...(options.now ? { now: options.now } : {}),
    ...(options.onReconciled ? { onReconciled: options.onReconciled } : {}),
  });
  const scheduler = startReconcileScheduler({ bus, db, intervalMs: options.intervalMs, log, metrics });
  // Every replica exports every page from the table, refreshed often enough that a page another replica
  // repaired stops looking broken here well within an alert's `for:`.
  const refreshGauges = () =>
    refreshSubscriptionGauges(db, metrics).catch((error: unknown) =>
      log.warn({ err: error }, "refreshing subscription gauges failed"),
    );
  await refreshGauges();
  const gaugeTimer = setInterval(refreshGauges, Math.min(options.intervalMs, 30_000));
  return {
    async stop() {
      clearInterval(gaugeTimer);
      await scheduler.stop();
      await Promise.all([worker.stop(), lifecycle.stop()]);
    },
  };
}
