import {
  boundPageLabels,
  Counter,
  createPageSeriesLimit,
  Gauge,
  Histogram,
  LATENCY_BUCKETS,
  type Registry,
} from "@switchboard/observability";

/** What the page-router exports on /metrics; each help text says what the number is for. */
export function createPageRouterMetrics(registry: Registry, pageLabel = createPageSeriesLimit()) {
  const registers = [registry];
  // page_id series for the first pages only (createPageSeriesLimit): bounded at 100,000 pages.
  return boundPageLabels(pageLabel, {
    entriesReceived: new Counter({
      name: "switchboard_router_entries_received_total",
      help: "Webhook entries the page-router took from the webhooks stream (redeliveries included), per page",
      labelNames: ["page_id"],
      registers,
    }),
    eventsRouted: new Counter({
      name: "switchboard_router_events_routed_total",
      help: "Typed messaging events stored in the events stream (repeats not counted), per page and kind (message, echo, postback, delivery, read, reaction, referral, optin, unsupported)",
      labelNames: ["page_id", "kind"],
      registers,
    }),
    eventsDuplicate: new Counter({
      name: "switchboard_router_events_duplicate_total",
      help: "Events the events stream already had (an entry routed again: redelivery, replay, Meta's retry), per page",
      labelNames: ["page_id"],
      registers,
    }),
    entriesIgnored: new Counter({
      name: "switchboard_router_entries_ignored_total",
      help: "Entries of a connected page that carry no Messenger item (feed `changes`, dashboard test pings, empty entries); the raw entry stays in the webhooks stream",
      labelNames: ["page_id", "reason"],
      registers,
    }),
    entriesUnrouted: new Counter({
      name: "switchboard_router_entries_unrouted_total",
      help: "Entries parked on the unrouted stream, per page and reason (unknown_page, page_disabled, platform_mismatch, undecodable)",
      labelNames: ["page_id", "reason"],
      registers,
    }),
    unroutedReplayed: new Counter({
      name: "switchboard_router_unrouted_replayed_total",
      help: "Unrouted entries sent back to the webhooks stream because their page is now connected",
      labelNames: ["page_id"],
      registers,
    }),
    entriesRetried: new Counter({
      name: "switchboard_router_entries_retried_total",
      help: "Entries handed back for redelivery after a transient failure (database, bus), per page",
      labelNames: ["page_id"],
      registers,
    }),
    entriesDeadLettered: new Counter({
      name: "switchboard_router_entries_dead_lettered_total",
      help: "Entries moved to the dead-letter stream (could never be processed), per page",
      labelNames: ["page_id"],
      registers,
    }),
    routingSeconds: new Histogram({
      name: "switchboard_router_entry_latency_seconds",
      help: "Time from the ingress receiving an entry to its events being published",
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    profileLookups: new Counter({
      name: "switchboard_router_profile_lookups_total",
      help: "Profile attached to incoming messages, per page and result (fetched, cached, unavailable, not_requested)",
      labelNames: ["page_id", "status"],
      registers,
    }),
    graphCalls: new Counter({
      name: "switchboard_graph_calls_total",
      help: "Graph API calls, per page, endpoint and outcome (ok or the error kind)",
      labelNames: ["page_id", "endpoint", "outcome"],
      registers,
    }),
    graphCallSeconds: new Histogram({
      name: "switchboard_graph_call_duration_seconds",
      help: "Duration of Graph API calls per endpoint",
      labelNames: ["endpoint"],
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    graphUsage: new Gauge({
      name: "switchboard_graph_usage_percent",
      help: "Highest usage percentage in Meta's X-App-Usage / X-Page-Usage / X-Business-Use-Case-Usage headers on the last call, per page",
      labelNames: ["page_id"],
      registers,
    }),
    graphBackoffs: new Counter({
      name: "switchboard_graph_backoffs_total",
      help: "Times a page's Graph calls were paused, per reason (rate_limit_error, high_usage)",
      labelNames: ["page_id", "reason"],
      registers,
    }),
    graphThrottled: new Counter({
      name: "switchboard_graph_calls_skipped_total",
      help: "Graph calls not made, per page and reason (backing_off, rate_limited, page_inactive, store_unavailable)",
      labelNames: ["page_id", "reason"],
      registers,
    }),
    entriesDelayed: new Counter({
      name: "switchboard_router_entries_delayed_total",
      help: "Entries moved to their page's overflow: over the page's fair share while other pages were waiting (delayed, never dropped), per page",
      labelNames: ["page_id"],
      registers,
    }),
    overflowDrained: new Counter({
      name: "switchboard_router_overflow_drained_total",
      help: "Entries routed from their page's overflow, per page",
      labelNames: ["page_id"],
      registers,
    }),
    overflowOverdue: new Counter({
      name: "switchboard_router_overflow_overdue_total",
      help: "Overflow entries routed without waiting further for their page's share: held back PAGE_SHAPING_MAX_DELAY already, per page",
      labelNames: ["page_id"],
      registers,
    }),
    overflowEntries: new Gauge({
      name: "switchboard_router_overflow_entries",
      help: "Entries waiting in a page's overflow, for the pages with the largest overflows (at most 20)",
      labelNames: ["page_id"],
      registers,
    }),
    overflowWaitSeconds: new Gauge({
      name: "switchboard_router_overflow_wait_seconds",
      help: "How long the entry last routed from a page's overflow had waited since the ingress received it, for the pages shown in switchboard_router_overflow_entries",
      labelNames: ["page_id"],
      registers,
    }),
    psidFloods: new Counter({
      name: "switchboard_router_psid_floods_flagged_total",
      help: "People (PSIDs) flagged for sending a page more than PSID_FLOOD_THRESHOLD messages within PSID_FLOOD_WINDOW, per page",
      labelNames: ["page_id"],
      registers,
    }),
    pageCacheInvalidations: new Counter({
      name: "switchboard_router_page_cache_invalidations_total",
      help: "PageConnection cache invalidations, per lifecycle event type (or reconnect)",
      labelNames: ["type"],
      registers,
    }),
  });
}
export type PageRouterMetrics = ReturnType<typeof createPageRouterMetrics>;
