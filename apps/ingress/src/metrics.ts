import {
  boundPageLabels,
  Counter,
  createPageSeriesLimit,
  Gauge,
  Histogram,
  LATENCY_BUCKETS,
  type Registry,
} from "@switchboard/observability";

export function createIngressMetrics(registry: Registry, pageLabel = createPageSeriesLimit()) {
  // page_id series for the first pages only (createPageSeriesLimit): bounded at 100,000 pages.
  return boundPageLabels(pageLabel, {
    webhooks: new Counter({
      name: "switchboard_webhooks_received_total",
      help: "Webhook POSTs received, by outcome (accepted, bad_signature, malformed, too_large, invalid_schema, app_object, broker_unavailable)",
      labelNames: ["outcome"],
      registers: [registry],
    }),
    appObjects: new Counter({
      name: "switchboard_webhook_app_objects_total",
      help: "Signed bodies of an app-level object (user, permissions, application, other): answered 200, never published",
      labelNames: ["object"],
      registers: [registry],
    }),
    entries: new Counter({
      name: "switchboard_webhook_entries_received_total",
      help: "Webhook entries stored in JetStream, per page",
      labelNames: ["page_id"],
      registers: [registry],
    }),
    duplicates: new Counter({
      name: "switchboard_webhook_entries_duplicate_total",
      help: "Entries JetStream recognised as a repeat (Meta retried a delivery), per page",
      labelNames: ["page_id"],
      registers: [registry],
    }),
    lastReceived: new Gauge({
      name: "switchboard_webhook_last_received_timestamp_seconds",
      help: "When the last entry for a page was received (unix seconds)",
      labelNames: ["page_id"],
      registers: [registry],
    }),
    invalidEntries: new Counter({
      name: "switchboard_webhook_entries_invalid_total",
      help: "Entries of a signed body that name no page, kept alone on the unrouted stream (the body's other entries are stored)",
      registers: [registry],
    }),
    largeEntries: new Counter({
      name: "switchboard_ingress_large_entries_total",
      help: "Entries larger than the broker's max payload, stored in the large-entries Object Store bucket",
      registers: [registry],
    }),
    signatureRejections: new Counter({
      name: "switchboard_webhook_signature_rejections_total",
      help: "POSTs refused for their X-Hub-Signature-256, by reason (missing, wrong_prefix, wrong_length, digest_mismatch)",
      labelNames: ["reason"],
      registers: [registry],
    }),
    publishSeconds: new Histogram({
      name: "switchboard_webhook_publish_seconds",
      help: "Time from receiving a webhook to JetStream acknowledging all its entries",
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    pageLabel,
  });
}
export type IngressMetrics = ReturnType<typeof createIngressMetrics>;
