import { type Bus, decodeMessage, type JsMsg, RetryLaterError, runConsumer } from "@switchboard/bus";
import { PageLifecycleEvent } from "@switchboard/contracts";
import type { Db } from "@switchboard/db";
import {
  type ReconcileResult,
  reconcileSubscription,
  type SubscriptionContext,
  unsubscribePage,
} from "@switchboard/subscriptions";
import type { Logger } from "pino";
import type { PageBackoff } from "./backoff";
import type { ConsumerTuning } from "./dependencies";
import { type SubscriptionMetrics, setPageSubscriptionGauges } from "./metrics";

export interface LifecycleConsumerOptions {
  bus: Bus;
  db: Db;
  subscriptions: SubscriptionContext;
  metrics: SubscriptionMetrics;
  log: Logger;
  backoff: PageBackoff;
  concurrency?: number;
  tuning: ConsumerTuning;
}

/**
 * Follows page lifecycle events: a connected page (or one with a new token) is subscribed on its own
 * `/{page-id}/subscribed_apps` and verified; a disconnected page is unsubscribed. Each event is checked
 * against the page's current status first, so a late or replayed event never undoes a newer change.
 * An event is acknowledged only once its effect is recorded (subscribed, or the page's failure written
 * down); a database or Redis failure is thrown, so the event comes back.
 */
export function startLifecycleConsumer(options: LifecycleConsumerOptions) {
  const { bus, db, subscriptions, metrics, log } = options;

  const settle = async (result: ReconcileResult) => {
    metrics.reconciles.inc({ trigger: "lifecycle", outcome: result.action });
    setPageSubscriptionGauges(metrics, {
      pageId: result.pageId,
      status: result.status,
      consecutiveFailures: result.consecutiveFailures,
      lastCheckedAt: new Date(),
    });
    const backoffMs = await options.backoff.record(result);
    const failure = result.failure;
    if (!failure?.retryable) return;
    // Meta is throttling or unavailable: the event comes back later (recorded meanwhile).
    if (failure.kind === "rate_limit") throw new RetryLaterError(failure.message, backoffMs);
    throw new Error(failure.message);
  };

  const handle = async (msg: JsMsg) => {
    const event = decodeMessage(msg, PageLifecycleEvent, "page lifecycle event");
    // Announcements of what happened, not changes to act on (the second one is this service's own).
    if (event.type === "page.status_changed" || event.type === "page.subscription_changed") return;
    const page = await db.pageConnection.findUnique({
      where: { pageId: event.pageId },
      select: { status: true },
    });
    if (!page) return;

    if (event.type === "page.disconnected") {
      if (page.status !== "disabled") return;
      log.info({ pageId: event.pageId }, "page disconnected, unsubscribing");
      return await settle(await unsubscribePage(subscriptions, event.pageId));
    }
    // A page Meta blocked from messaging still receives webhooks: it stays subscribed.
    if (page.status !== "active" && page.status !== "blocked") return;
    const waitMs = await options.backoff.remainingMs(event.pageId);
    if (waitMs > 0) throw new RetryLaterError("page is backed off after a rate limit", waitMs);
    log.info({ pageId: event.pageId, event: event.type }, "subscribing page");
    const result = await reconcileSubscription(subscriptions, event.pageId, "subscribe");
    if (result.action === "subscribed") {
      log.info({ pageId: event.pageId, fields: result.after }, "page subscribed");
    }
    await settle(result);
  };

  return runConsumer({
    js: bus.js,
    jsm: bus.jsm,
    topology: bus.topology,
    stream: bus.topology.streams.pages.name,
    durable: bus.topology.consumers.subscriptionService,
    filterSubject: bus.topology.subjects.pageLifecycleAll,
    stage: "subscription-lifecycle",
    log,
    handle,
    concurrency: options.concurrency ?? 4,
    ...options.tuning,
  });
}
