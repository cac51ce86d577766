import type { Db, SubscriptionStatus } from "@switchboard/db";
import type { GraphCallRecord } from "@switchboard/graph-api";
import { Counter, Gauge, Histogram, LATENCY_BUCKETS, type Registry } from "@switchboard/observability";

const STATUSES: SubscriptionStatus[] = [
  "pending",
  "subscribed",
  "missing",
  "error",
  "reauthorization_required",
  "unsubscribed",
];

export function createSubscriptionMetrics(registry: Registry) {
  const metrics = {
    status: new Gauge({
      name: "switchboard_page_subscription_status",
      help: "1 for the page's current subscription status (pending, subscribed, missing, error, reauthorization_required, unsubscribed), 0 for the others",
      labelNames: ["page_id", "status"],
      registers: [registry],
    }),
    consecutiveFailures: new Gauge({
      name: "switchboard_page_subscription_consecutive_failures",
      help: "Failed subscription checks in a row, per page (0 when the last one succeeded)",
      labelNames: ["page_id"],
      registers: [registry],
    }),
    lastChecked: new Gauge({
      name: "switchboard_page_subscription_last_checked_timestamp_seconds",
      help: "When Meta was last asked about the page's subscription (unix seconds)",
      labelNames: ["page_id"],
      registers: [registry],
    }),
    reconciles: new Counter({
      name: "switchboard_subscription_reconciles_total",
      help: "Subscription reconciles by trigger (schedule, lifecycle) and outcome (verified, repaired, subscribed, unsubscribed, failed, duplicate, stale, inactive, backed_off)",
      labelNames: ["trigger", "outcome"],
      registers: [registry],
    }),
    jobsScheduled: new Counter({
      name: "switchboard_subscription_jobs_scheduled_total",
      help: "Reconcile jobs this replica published, by result (stored, duplicate: another replica had scheduled it)",
      labelNames: ["result"],
      registers: [registry],
    }),
    graphCalls: new Counter({
      name: "switchboard_graph_calls_total",
      help: "Graph API calls (each attempt) by page, endpoint and outcome (ok or the error kind)",
      labelNames: ["page_id", "endpoint", "outcome"],
      registers: [registry],
    }),
    graphSeconds: new Histogram({
      name: "switchboard_graph_call_duration_seconds",
      help: "Graph API call duration by endpoint",
      labelNames: ["endpoint"],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    graphUsage: new Gauge({
      name: "switchboard_graph_usage_percent",
      help: "Highest usage percentage in Meta's X-App-Usage / X-Page-Usage / X-Business-Use-Case-Usage headers, per page",
      labelNames: ["page_id"],
      registers: [registry],
    }),
    consumerPaused: new Gauge({
      name: "switchboard_subscription_consumer_paused",
      help: "1 while a consumer (lifecycle, reconcile) is paused because PostgreSQL or Redis does not answer",
      labelNames: ["consumer"],
      registers: [registry],
    }),
  };
  return metrics;
}
export type SubscriptionMetrics = ReturnType<typeof createSubscriptionMetrics>;

/** The Graph client's `onCall`: counts, times and usage per endpoint (never a token). */
export function recordGraphCall(metrics: SubscriptionMetrics) {
  return (call: GraphCallRecord) => {
    metrics.graphCalls.inc({ page_id: call.pageId ?? "", endpoint: call.endpoint, outcome: call.outcome });
    metrics.graphSeconds.observe({ endpoint: call.endpoint }, call.durationMs / 1000);
    if (call.pageId && call.usage.maxPercent !== undefined) {
      metrics.graphUsage.set({ page_id: call.pageId }, call.usage.maxPercent);
    }
  };
}

export function setPageSubscriptionGauges(
  metrics: SubscriptionMetrics,
  row: {
    pageId: string;
    status: SubscriptionStatus;
    consecutiveFailures: number;
    lastCheckedAt: Date | null;
  },
) {
  for (const status of STATUSES) {
    metrics.status.set({ page_id: row.pageId, status }, status === row.status ? 1 : 0);
  }
  metrics.consecutiveFailures.set({ page_id: row.pageId }, row.consecutiveFailures);
  if (row.lastCheckedAt) metrics.lastChecked.set({ page_id: row.pageId }, row.lastCheckedAt.getTime() / 1000);
}

/**
 * Sets the per-page gauges from `page_subscriptions`, so every replica exports every page (not only the
 * pages it happened to check) and a removed page's series disappear.
 */
export async function refreshSubscriptionGauges(db: Db, metrics: SubscriptionMetrics) {
  const rows = await db.pageSubscription.findMany({
    select: { pageId: true, status: true, consecutiveFailures: true, lastCheckedAt: true },
  });
  metrics.status.reset();
  metrics.consecutiveFailures.reset();
  metrics.lastChecked.reset();
  for (const row of rows) setPageSubscriptionGauges(metrics, row);
}
