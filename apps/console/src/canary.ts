import { randomUUID } from "node:crypto";
import { type Bus, decodeMessage, runConsumer } from "@switchboard/bus";
import { buildCanaryEntry, CanaryEvent, webhookSignature } from "@switchboard/contracts";
import { Counter, Gauge, Histogram, LATENCY_BUCKETS, type Registry } from "@switchboard/observability";
import type { Logger } from "pino";

export interface CanarySettings {
  /** The page id reserved for the canary; the page-router must have the same `CANARY_PAGE_ID`. */
  pageId: string;
  /** The public webhook URL, as Meta calls it (through the load balancer and TLS in production). */
  ingressUrl: string;
  appSecret: string;
  intervalMs: number;
  timeoutMs: number;
}

export function createCanaryMetrics(registry: Registry) {
  const registers = [registry];
  return {
    sent: new Counter({
      name: "switchboard_canary_sent_total",
      help: "Canary webhooks sent to the public ingress URL, by outcome (accepted, rejected: a non-2xx answer, unreachable)",
      labelNames: ["outcome"],
      registers,
    }),
    received: new Counter({
      name: "switchboard_canary_received_total",
      help: "Canary events that reached the canary sink, by result (ok, stale: older than the freshness bound, e.g. after the sink was down)",
      labelNames: ["result"],
      registers,
    }),
    roundTrip: new Histogram({
      name: "switchboard_canary_round_trip_seconds",
      help: "From sending the canary webhook to the canary sink receiving its event (ingress, JetStream, page-router)",
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    stageSeconds: new Histogram({
      name: "switchboard_canary_stage_seconds",
      help: "Canary time per stage: ingress (sent → received), router (received → routed), sink (routed → sink)",
      labelNames: ["stage"],
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    lastSuccess: new Gauge({
      name: "switchboard_canary_last_success_timestamp_seconds",
      help: "When a fresh canary last completed the round trip (unix seconds)",
      registers,
    }),
  };
}
export type CanaryMetrics = ReturnType<typeof createCanaryMetrics>;

/** Signs and POSTs one canary webhook exactly as Meta would send it. */
export async function sendCanary(settings: CanarySettings, metrics: CanaryMetrics, log: Logger) {
  const canaryId = randomUUID();
  const body = JSON.stringify({
    object: "page",
    entry: [buildCanaryEntry({ pageId: settings.pageId, canaryId, sentAt: Date.now() })],
  });
  try {
    const res = await fetch(settings.ingressUrl, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-hub-signature-256": webhookSignature(body, settings.appSecret),
      },
      body,
      signal: AbortSignal.timeout(settings.timeoutMs),
    });
    const outcome = res.ok ? "accepted" : "rejected";
    metrics.sent.inc({ outcome });
    if (!res.ok) log.warn({ canaryId, status: res.status }, "canary webhook rejected by the ingress");
    return { canaryId, outcome };
  } catch (error) {
    metrics.sent.inc({ outcome: "unreachable" });
    log.warn({ canaryId, err: (error as Error).message }, "canary webhook could not be delivered");
    return { canaryId, outcome: "unreachable" as const };
  }
}

/** The canary sink's verdict on one event; pure so the freshness rule is tested alone. */
export function judgeCanary(event: CanaryEvent, now: number, freshForMs: number) {
  const roundTripMs = now - event.sentAt;
  return {
    fresh: roundTripMs <= freshForMs,
    roundTripMs,
    stages: {
      ingress: event.receivedAt - event.sentAt,
      router: event.routedAt - event.receivedAt,
      sink: now - event.routedAt,
    },
  };
}

/**
 * Sends a canary every interval and consumes the canary events (a durable consumer shared by console
 * replicas, so any replica may record a canary another one sent: the send time travels in the event).
 */
export async function startCanary(deps: {
  bus: Bus;
  settings: CanarySettings;
  metrics: CanaryMetrics;
  log: Logger;
}): Promise<{ stop(): Promise<void> }> {
  const { bus, settings, metrics, log } = deps;
  const { streams, subjects, consumers } = bus.topology;
  // A canary older than a few intervals says nothing about the pipeline now (the sink was down).
  const freshForMs = Math.max(5 * settings.intervalMs, 60_000);
  const sink = await runConsumer({
    js: bus.js,
    jsm: bus.jsm,
    topology: bus.topology,
    stream: streams.events.name,
    durable: consumers.canarySink,
    filterSubject: subjects.canaryEvents,
    stage: "canary-sink",
    log,
    concurrency: 4,
    handle: async (msg) => {
      const event = decodeMessage(msg, CanaryEvent, "canary event");
      const verdict = judgeCanary(event, Date.now(), freshForMs);
      if (!verdict.fresh) {
        metrics.received.inc({ result: "stale" });
        return;
      }
      metrics.received.inc({ result: "ok" });
      metrics.roundTrip.observe(verdict.roundTripMs / 1000);
      for (const [stage, ms] of Object.entries(verdict.stages)) {
        metrics.stageSeconds.observe({ stage }, Math.max(0, ms) / 1000);
      }
      metrics.lastSuccess.set(Date.now() / 1000);
      log.debug({ canaryId: event.canaryId, roundTripMs: verdict.roundTripMs }, "canary completed");
    },
  });
  let sending: Promise<unknown> = Promise.resolve();
  const tick = () => {
    sending = sendCanary(settings, metrics, log);
  };
  tick();
  const timer = setInterval(tick, settings.intervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await sending;
      await sink.stop();
    },
  };
}
