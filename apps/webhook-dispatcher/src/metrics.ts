import type { Db } from "@switchboard/db";
import {
  Counter,
  createPageSeriesLimit,
  Gauge,
  Histogram,
  LATENCY_BUCKETS,
  type Registry,
} from "@switchboard/observability";
import type { DeliveryOutcome } from "@switchboard/webhooks";

/**
 * Per-endpoint series are bounded like per-page ones: the first `endpointSeriesLimit` endpoints keep
 * their own `endpoint_id`, the rest share `_other` (per-endpoint detail is in the API and the console).
 */
export function createDispatcherMetrics(registry: Registry, endpointSeriesLimit = 200) {
  const endpointLabel = createPageSeriesLimit(endpointSeriesLimit);
  const registers = [registry];
  const attempts = new Counter({
    name: "switchboard_webhook_attempts_total",
    help: "Webhook delivery attempts by endpoint and result (success: a 2xx in time)",
    labelNames: ["endpoint_id", "result"],
    registers,
  });
  const attemptSeconds = new Histogram({
    name: "switchboard_webhook_attempt_seconds",
    help: "Time from sending a delivery to the endpoint's answer (or the timeout), by endpoint",
    labelNames: ["endpoint_id"],
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const pending = new Gauge({
    name: "switchboard_webhook_pending_deliveries",
    help: "Deliveries not delivered yet, by endpoint (read from the database)",
    labelNames: ["endpoint_id"],
    registers,
  });
  const oldestPending = new Gauge({
    name: "switchboard_webhook_oldest_pending_seconds",
    help: "Age of the oldest undelivered delivery, by endpoint (read from the database)",
    labelNames: ["endpoint_id"],
    registers,
  });
  const endpoints = new Gauge({
    name: "switchboard_webhook_endpoints",
    help: "Webhook endpoints by state (enabled, failing, disabled)",
    labelNames: ["state"],
    registers,
  });
  return {
    deliveriesQueued: new Counter({
      name: "switchboard_webhook_deliveries_queued_total",
      help: "Delivery rows written by the fan-out, by event type",
      labelNames: ["type"],
      registers,
    }),
    deliveriesFailed: new Counter({
      name: "switchboard_webhook_deliveries_failed_total",
      help: "Deliveries that used up the retry schedule (an operator can retry them)",
      registers,
    }),
    endpointsDisabled: new Counter({
      name: "switchboard_webhook_endpoints_disabled_total",
      help: "Endpoints this replica disabled after failing for WEBHOOK_DISABLE_AFTER",
      registers,
    }),
    deliveryLag: new Histogram({
      name: "switchboard_webhook_delivery_lag_seconds",
      help: "Time from a delivery row's creation to its successful attempt",
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    paused: new Gauge({
      name: "switchboard_webhook_fan_out_paused",
      help: "1 while the fan-out waits for PostgreSQL to answer again",
      registers,
    }),
    attempts,
    attemptSeconds,
    pending,
    oldestPending,
    endpoints,
    observeAttempt(endpointId: string, outcome: DeliveryOutcome) {
      const label = endpointLabel(endpointId);
      attempts.inc({ endpoint_id: label, result: outcome.ok ? "success" : "failure" });
      attemptSeconds.observe({ endpoint_id: label }, outcome.durationMs / 1000);
    },
    /** Backlog gauges from the database (the same on every replica: alerts take the max). */
    async refreshBacklog(db: Db) {
      const rows = await db.$queryRaw<Array<{ endpoint_id: string; pending: bigint; oldest: Date }>>`
        SELECT d.endpoint_id::text AS endpoint_id, count(*) AS pending, min(d.created_at) AS oldest
        FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
        WHERE d.status = 'pending' AND e.enabled -- a disabled endpoint's rows are paused, not a backlog
        GROUP BY d.endpoint_id`;
      const states = await db.$queryRaw<Array<{ state: string; n: bigint }>>`
        SELECT CASE WHEN NOT enabled THEN 'disabled' WHEN failing_since IS NOT NULL THEN 'failing'
                    ELSE 'enabled' END AS state, count(*) AS n
        FROM webhook_endpoints GROUP BY 1`;
      pending.reset();
      oldestPending.reset();
      const now = Date.now();
      const byLabel = new Map<string, { pending: number; oldest: number }>();
      for (const row of rows) {
        const label = endpointLabel(row.endpoint_id);
        const seen = byLabel.get(label) ?? { pending: 0, oldest: 0 };
        seen.pending += Number(row.pending);
        seen.oldest = Math.max(seen.oldest, (now - row.oldest.getTime()) / 1000);
        byLabel.set(label, seen);
      }
      for (const [label, value] of byLabel) {
        pending.set({ endpoint_id: label }, value.pending);
        oldestPending.set({ endpoint_id: label }, value.oldest);
      }
      endpoints.reset();
      for (const state of ["enabled", "failing", "disabled"]) endpoints.set({ state }, 0);
      for (const row of states) endpoints.set({ state: row.state }, Number(row.n));
    },
  };
}
export type DispatcherMetrics = ReturnType<typeof createDispatcherMetrics>;
