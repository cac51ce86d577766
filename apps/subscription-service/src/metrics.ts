import type { Db, SubscriptionStatus } from "@switchboard/db";
import type { GraphCallRecord } from "@switchboard/graph-api";
import {
  boundPageLabels,
  Counter,
  createPageSeriesLimit,
  Gauge,
  Histogram,
  LATENCY_BUCKETS,
  type Registry,
} from "@switchboard/observability";

const STATUSES: SubscriptionStatus[] = [
  "pending",
  "subscribed",
  "missing",
  "error",
  "reauthorization_required",
  "unsubscribed",
];

/** Statuses that need someone: every page in one keeps its own series (alerts name the page). */
const PROBLEMS: ReadonlySet<SubscriptionStatus> = new Set(["missing", "error", "reauthorization_required"]);
/** At most this many problem pages get series; the rest are counted in `switchboard_page_subscriptions`. */
const MAX_PROBLEM_PAGES = 1000;
/** Pages outside trouble with series of their own (the first by page id; the same on every replica). */
const PAGE_SERIES_LIMIT = 100;

export function createSubscriptionMetrics(
  registry: Registry,
  pageLabel = createPageSeriesLimit(PAGE_SERIES_LIMIT),
) {
  const metrics = {
    pages: new Gauge({
      name: "switchboard_page_subscriptions",
      help: "Pages per subscription status (every page, from the database)",
      labelNames: ["status"],
      registers: [registry],
    }),
    tokenRefreshes: new Counter({
      name: "switchboard_token_refreshes_total",
      help: "Instagram token refreshes by outcome: refreshed, superseded (reconnected meanwhile), rejected and expired (re-authorisation needed), failed (retried), busy",
      labelNames: ["outcome"],
      registers: [registry],
    }),
    policyState: new Gauge({
      name: "switchboard_page_policy_state",
      help: "1 per page Meta blocked from messaging (action=block) or warned within 7 days (action=warning); at most 1000 pages each",
      labelNames: ["page_id", "action"],
      registers: [registry],
    }),
    tokensExpiringSoon: new Gauge({
      name: "switchboard_instagram_tokens_expiring_soon",
      help: "Active Instagram accounts whose token expires within 7 days (refresh has not kept it alive)",
      registers: [registry],
    }),
    oldestCheck: new Gauge({
      name: "switchboard_page_subscription_oldest_check_timestamp_seconds",
      help: "The least recent subscription check of any page (unix seconds): reconciliation has stalled when it is old",
      registers: [registry],
    }),
    status: new Gauge({
      name: "switchboard_page_subscription_status",
      help: "1 for the page's current subscription status (pending, subscribed, missing, error, reauthorization_required, unsubscribed), 0 for the others. Pages in trouble (missing, error, reauthorization_required) always have series; the others only within the per-page series limit",
      labelNames: ["page_id", "status"],
      registers: [registry],
    }),
    consecutiveFailures: new Gauge({
      name: "switchboard_page_subscription_consecutive_failures",
      help: "Failed subscription checks in a row, per page with failures (absent when the last check succeeded)",
      labelNames: ["page_id"],
      registers: [registry],
    }),
    lastChecked: new Gauge({
      name: "switchboard_page_subscription_last_checked_timestamp_seconds",
      help: "When Meta was last asked about the page's subscription (unix seconds), within the per-page series limit",
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
  // Graph calls and usage per page: the first pages only (createPageSeriesLimit).
  boundPageLabels(pageLabel, { graphCalls: metrics.graphCalls, graphUsage: metrics.graphUsage });
  /** Pages outside trouble that have series: the first by page id, as of the last refresh. */
  const listedPages = new Set<string>();
  return { ...metrics, listedPages };
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
  const page_id = row.pageId;
  // Bounded at 100,000 pages: a page has series while it is in trouble, or within the series limit.
  if (!metrics.listedPages.has(page_id) && metrics.listedPages.size < PAGE_SERIES_LIMIT) {
    metrics.listedPages.add(page_id);
  }
  const ownSeries = PROBLEMS.has(row.status) || metrics.listedPages.has(page_id);
  if (!ownSeries) {
    removePageSeries(metrics, page_id);
    return;
  }
  for (const status of STATUSES) metrics.status.set({ page_id, status }, status === row.status ? 1 : 0);
  if (row.consecutiveFailures > 0) metrics.consecutiveFailures.set({ page_id }, row.consecutiveFailures);
  else metrics.consecutiveFailures.remove({ page_id });
  if (row.lastCheckedAt) metrics.lastChecked.set({ page_id }, row.lastCheckedAt.getTime() / 1000);
}

function removePageSeries(metrics: SubscriptionMetrics, page_id: string) {
  for (const status of STATUSES) metrics.status.remove({ page_id, status });
  metrics.consecutiveFailures.remove({ page_id });
  metrics.lastChecked.remove({ page_id });
}

/**
 * Sets the gauges from `page_subscriptions`, so every replica exports the same (not only the pages it
 * happened to check) and a removed page's series disappear: counts per status for every page, series for
 * the pages in trouble (up to MAX_PROBLEM_PAGES) and for the first pages by id within the series limit.
 */
export async function refreshSubscriptionGauges(db: Db, metrics: SubscriptionMetrics) {
  const select = { pageId: true, status: true, consecutiveFailures: true, lastCheckedAt: true } as const;
  const [counts, oldest, problems, first, expiringSoon, blocked, warned] = await Promise.all([
    db.pageSubscription.groupBy({ by: ["status"], _count: { _all: true } }),
    db.pageSubscription.aggregate({
      _min: { lastCheckedAt: true },
      where: { status: { not: "unsubscribed" } },
    }),
    db.pageSubscription.findMany({
      select,
      where: { status: { in: [...PROBLEMS] } },
      orderBy: { updatedAt: "desc" },
      take: MAX_PROBLEM_PAGES,
    }),
    db.pageSubscription.findMany({ select, orderBy: { pageId: "asc" }, take: PAGE_SERIES_LIMIT }),
    db.pageConnection.count({
      where: {
        platform: "instagram",
        status: "active",
        tokenExpiresAt: { lt: new Date(Date.now() + 7 * 86_400_000) },
      },
    }),
    db.pageConnection.findMany({
      where: { status: "blocked" },
      select: { pageId: true },
      take: MAX_PROBLEM_PAGES,
    }),
    db.pagePolicyEvent.findMany({
      where: { action: "warning", occurredAt: { gte: new Date(Date.now() - 7 * 86_400_000) } },
      distinct: ["pageId"],
      select: { pageId: true },
      take: MAX_PROBLEM_PAGES,
    }),
  ]);
  metrics.policyState.reset();
  for (const { pageId } of blocked) metrics.policyState.set({ page_id: pageId, action: "block" }, 1);
  for (const { pageId } of warned) metrics.policyState.set({ page_id: pageId, action: "warning" }, 1);
  metrics.tokensExpiringSoon.set(expiringSoon);
  metrics.pages.reset();
  for (const status of STATUSES) {
    metrics.pages.set({ status }, counts.find((c) => c.status === status)?._count._all ?? 0);
  }
  if (oldest._min.lastCheckedAt) metrics.oldestCheck.set(oldest._min.lastCheckedAt.getTime() / 1000);
  metrics.status.reset();
  metrics.consecutiveFailures.reset();
  metrics.lastChecked.reset();
  metrics.listedPages.clear();
  for (const row of first) metrics.listedPages.add(row.pageId);
  for (const row of [...first, ...problems]) setPageSubscriptionGauges(metrics, row);
}
