import { createHash } from "node:crypto";
import { type Bus, decodeMessage, type JsMsg, type RunningConsumer, runConsumer } from "@switchboard/bus";
import {
  conversationKey,
  DELIVERED_PAGE_EVENTS,
  DomainStreamEvent,
  domainEventId,
  endpointDisabledEventId,
  PageLifecycleEvent,
  type WebhookDeliveryBody,
} from "@switchboard/contracts";
import type { Db } from "@switchboard/db";
import type { Logger } from "pino";
import type { DispatcherMetrics } from "./metrics";

/**
 * The fan-out: every event of the domain stream (and the page lifecycle events a product hears about)
 * becomes one delivery row per endpoint of the page's company that asked for its type (a disabled one's wait). A row is
 * written once per (endpoint, event) whatever the redeliveries, and the message is acked after the
 * insert commits, so the consumer's ack floor says "every event up to here has its rows": the delivery
 * loop sends an event only below that floor, which keeps the order per conversation across replicas
 * that fan out concurrently.
 */
export type DeliverySource = "domain" | "pages";

export interface FannedOutEvent {
  eventId: string;
  type: string;
  /** Deliveries of one key go out one at a time, in stream order. */
  orderingKey: string;
  occurredAt: number;
  pageId?: string;
  companyId?: string;
  data: unknown;
}

/** The `webhook-id` of an event: the same on every retry and for every endpoint. */
export function webhookMessageId(eventId: string): string {
  return `msg_${createHash("sha256").update(eventId).digest("base64url").slice(0, 27)}`;
}

/** Reads a domain stream message: what it is, its id, and who should hear it. */
export function domainDelivery(msg: JsMsg): FannedOutEvent {
  const event = decodeMessage(msg, DomainStreamEvent, "domain event");
  if (event.type === "webhook_endpoint.disabled") {
    return {
      eventId: endpointDisabledEventId(event),
      type: event.type,
      orderingKey: `company:${event.companyId}`,
      occurredAt: event.occurredAt,
      companyId: event.companyId,
      data: event,
    };
  }
  return {
    eventId: domainEventId(event),
    type: event.type,
    orderingKey: `conversation:${conversationKey(event.pageId, event.psid)}`,
    occurredAt: event.occurredAt,
    pageId: event.pageId,
    data: event,
  };
}

/** A page lifecycle message, or undefined for the kinds that stay internal. */
export function pageDelivery(msg: JsMsg): FannedOutEvent | undefined {
  const event = decodeMessage(msg, PageLifecycleEvent, "page lifecycle event");
  if (!(DELIVERED_PAGE_EVENTS as readonly string[]).includes(event.type)) return undefined;
  return {
    // The publisher's own `Nats-Msg-Id` (type, page, time) names the fact.
    eventId: msg.headers?.get("Nats-Msg-Id") || `${event.type}:${event.pageId}:${event.occurredAt}`,
    type: event.type,
    orderingKey: `page:${event.pageId}`,
    occurredAt: event.occurredAt,
    companyId: event.companyId,
    data: event,
  };
}

export function deliveryBody(event: FannedOutEvent): string {
  const body = {
    type: event.type,
    timestamp: new Date(event.occurredAt).toISOString(),
    data: event.data,
  } as WebhookDeliveryBody;
  return JSON.stringify(body);
}

/**
 * One statement: the company (given, or the page's), its endpoints that take this type, one row each; a
 * redelivered event finds its rows and adds none. A disabled endpoint's rows wait (disabling pauses; enabling
 * again delivers them in order) until WEBHOOK_DELIVERY_RETENTION. Returns the rows written.
 */
export async function recordDeliveries(
  db: Db,
  event: FannedOutEvent,
  source: DeliverySource,
  streamSeq: number,
): Promise<number> {
  const body = deliveryBody(event);
  const rows = await db.$queryRaw<Array<{ id: string }>>`
    INSERT INTO webhook_deliveries
      (id, endpoint_id, event_id, webhook_id, event_type, source, stream_seq, ordering_key, body, occurred_at)
    SELECT gen_random_uuid(), e.id, ${event.eventId}, ${webhookMessageId(event.eventId)}, ${event.type},
           ${source}, ${streamSeq}, ${event.orderingKey}, ${body}, ${new Date(event.occurredAt)}
    FROM webhook_endpoints e
    WHERE e.company_id = COALESCE(
            ${event.companyId ?? null}::text,
            (SELECT company_id FROM page_connections WHERE page_id = ${event.pageId ?? null}::text))
      AND (cardinality(e.events) = 0 OR ${event.type} = ANY(e.events))
    ON CONFLICT (endpoint_id, event_id) DO NOTHING
    RETURNING id`;
  return rows.length;
}

export interface FanOutDeps {
  bus: Bus;
  db: Db;
  log: Logger;
  metrics: DispatcherMetrics;
  /** Called after rows were written, so this replica's delivery loop looks at once. */
  onRecorded: () => void;
  probeDependencies: () => Promise<void>;
  concurrency: number;
}

const FAN_OUT_ACK_WAIT_MS = 5_000;

/** The two fan-out consumers (domain stream, pages stream). */
export async function startFanOut(deps: FanOutDeps): Promise<RunningConsumer[]> {
  const { bus, db, log, metrics } = deps;
  const { streams, subjects, consumers } = bus.topology;
  const handler =
    (source: DeliverySource, read: (msg: JsMsg) => FannedOutEvent | undefined) => async (msg: JsMsg) => {
      const event = read(msg);
      if (!event) return;
      const written = await recordDeliveries(db, event, source, msg.info.streamSequence);
      if (written > 0) {
        metrics.deliveriesQueued.inc({ type: event.type }, written);
        deps.onRecorded();
      }
    };
  const common = {
    js: bus.js,
    jsm: bus.jsm,
    topology: bus.topology,
    log,
    concurrency: deps.concurrency,
    probeDependencies: deps.probeDependencies,
    onPauseChange: (paused: boolean) => metrics.paused.set(paused ? 1 : 0),
    // Deliveries wait for the ack floor: what a killed replica held must come back soon, not after 30 s
    // (a handler is one INSERT; a slow one is kept alive by the consumer's heartbeat).
    ackWaitMs: FAN_OUT_ACK_WAIT_MS,
  };
  return Promise.all([
    runConsumer({
      ...common,
      stream: streams.domain.name,
      durable: consumers.webhookDispatcher,
      filterSubject: subjects.domainEvents,
      stage: "webhook-fan-out",
      handle: handler("domain", domainDelivery),
    }),
    runConsumer({
      ...common,
      stream: streams.pages.name,
      durable: consumers.webhookDispatcherPages,
      filterSubject: subjects.pageLifecycleAll,
      stage: "webhook-fan-out-pages",
      handle: handler("pages", pageDelivery),
    }),
  ]);
}

/**
 * How far each source is fanned out: the consumers' ack floors (every message up to it is acked, so its
 * rows are committed). Read at most every `maxAgeMs`.
 */
export function fanOutFloors(bus: Bus, maxAgeMs = 100) {
  const { streams, consumers } = bus.topology;
  let cached: { at: number; floors: Record<DeliverySource, number> } | undefined;
  let pending: Promise<Record<DeliverySource, number>> | undefined;
  const floorOf = async (stream: string, durable: string) =>
    (await bus.jsm.consumers.info(stream, durable)).ack_floor.stream_seq;
  return async (): Promise<Record<DeliverySource, number>> => {
    if (cached && Date.now() - cached.at < maxAgeMs) return cached.floors;
    pending ??= Promise.all([
      floorOf(streams.domain.name, consumers.webhookDispatcher),
      floorOf(streams.pages.name, consumers.webhookDispatcherPages),
    ])
      .then(
        ([domain, pages]) => {
          const floors = { domain, pages };
          cached = { at: Date.now(), floors };
          return floors;
        },
        (error: unknown) => {
          // A floor only grows: the last one read is still safe while JetStream elects a consumer leader.
          if (cached) return cached.floors;
          throw error;
        },
      )
      .finally(() => {
        pending = undefined;
      });
    return pending;
  };
}
