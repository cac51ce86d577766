import { type Bus, decodeMessage, type JsMsg, type RunningConsumer, runConsumer } from "@switchboard/bus";
import { ReconcileJob } from "@switchboard/contracts";
import type { Db } from "@switchboard/db";
import { reconcileSubscription, type SubscriptionContext } from "@switchboard/subscriptions";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { PageBackoff } from "./backoff";
import type { ConsumerTuning } from "./dependencies";
import { type SubscriptionMetrics, setPageSubscriptionGauges } from "./metrics";
import { slotOf } from "./scheduler";
import { refreshInstagramTokenIfDue } from "./token-refresh";

export interface ReconcileWorkerOptions {
  bus: Bus;
  db: Db;
  redis: Redis;
  keyPrefix: string;
  subscriptions: SubscriptionContext;
  metrics: SubscriptionMetrics;
  log: Logger;
  concurrency: number;
  backoff: PageBackoff;
  tuning: ConsumerTuning;
  instagramTokenRefreshBeforeMs: number;
  now?: () => number;
  /** Called after each job this replica actually reconciled (tests count them). */
  onReconciled?: (job: ReconcileJob) => void;
}

/** The Redis key by which one replica claims a page's check for a slot. */
function claimKey(prefix: string, pageId: string, slot: number) {
  return `${prefix}subscriptions:claim:${pageId}:${slot}`;
}

/**
 * Takes per-page jobs from the `reconcile` work queue (one durable consumer shared by every replica, so
 * each job goes to one of them) and checks or repairs the page. A rate-limited page backs off on its
 * own while the others go on; a page whose token is invalid is no longer active and is skipped.
 */
export function startReconcileWorker(options: ReconcileWorkerOptions): Promise<RunningConsumer> {
  const { bus, db, redis, subscriptions, metrics, log } = options;
  const now = options.now ?? Date.now;
  const count = (outcome: string) => metrics.reconciles.inc({ trigger: "schedule", outcome });

  const handle = async (msg: JsMsg) => {
    const job = decodeMessage(msg, ReconcileJob, "reconcile job");
    const { pageId } = job;

    // Jobs that waited through a whole interval (every replica was down) are covered by newer ones.
    if (job.slot < slotOf(now(), job.intervalMs) - 1) return count("stale");

    // One check per page per slot, even when the stream's duplicate window has forgotten the first
    // publish. The claim holds the stream sequence, so a redelivery of the same job still runs.
    const claim = claimKey(options.keyPrefix, pageId, job.slot);
    const claimed = await redis.set(claim, String(msg.seq), "PX", job.intervalMs * 2, "NX");
    if (claimed === null && (await redis.get(claim)) !== String(msg.seq)) return count("duplicate");

    const page = await db.pageConnection.findUnique({
      where: { pageId },
      select: { status: true, platform: true },
    });
    // Blocked by Meta: still routed, so still subscribed and checked.
    if (page?.status !== "active" && page?.status !== "blocked") return count("inactive");
    if ((await options.backoff.remainingMs(pageId)) > 0) return count("backed_off");

    // An Instagram token near its 60 days is refreshed before the check uses it.
    if (
      page.status === "active" &&
      page.platform === "instagram" &&
      subscriptions.instagram &&
      subscriptions.bus
    ) {
      const refreshed = await refreshInstagramTokenIfDue(
        {
          db,
          bus: subscriptions.bus,
          cipher: subscriptions.cipher,
          graph: subscriptions.instagram.graph,
          redis,
          keyPrefix: options.keyPrefix,
          log,
          metrics,
          refreshBeforeMs: options.instagramTokenRefreshBeforeMs,
          now,
        },
        pageId,
      );
      if (refreshed === "rejected" || refreshed === "expired") return count("inactive");
    }

    const result = await reconcileSubscription(subscriptions, pageId, "reconcile");
    count(result.action);
    options.onReconciled?.(job);
    setPageSubscriptionGauges(metrics, {
      pageId,
      status: result.status,
      consecutiveFailures: result.consecutiveFailures,
      lastCheckedAt: new Date(),
    });

    const backoffMs = await options.backoff.record(result);
    if (backoffMs > 0) log.warn({ pageId, backoffMs }, "page rate-limited, backing off");
  };

  return runConsumer({
    js: bus.js,
    jsm: bus.jsm,
    topology: bus.topology,
    stream: bus.topology.streams.reconcile.name,
    durable: bus.topology.consumers.reconcileWorker,
    filterSubject: bus.topology.subjects.reconcileJobs,
    stage: "subscription-reconcile",
    log,
    handle,
    concurrency: options.concurrency,
    ...options.tuning,
  });
}
