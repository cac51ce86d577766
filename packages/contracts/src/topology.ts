/**
 * Every stream, subject and durable consumer name in Switchboard. Nothing outside this file spells one.
 * A namespace (`BUS_NAMESPACE`, default `sb`) prefixes all of them so test runs never collide.
 */
export function busTopology(namespace = "sb") {
  const ns = namespace;
  const NS = namespace.toUpperCase().replace(/[^A-Z0-9_]/g, "_");
  const token = (value: string) => value.replace(/[.*>\s]/g, "_");

  const streams = {
    /** Raw entries as Meta sent them, one message per entry, deduplicated by content. */
    webhooks: { name: `${NS}_WEBHOOKS`, subjects: [`${ns}.webhook.entry.>`] },
    /** Entries no page could take (unknown, disabled, undecodable), kept for replay. */
    unrouted: { name: `${NS}_UNROUTED`, subjects: [`${ns}.unrouted.>`] },
    /** Typed messaging events, one subject per page. */
    events: { name: `${NS}_EVENTS`, subjects: [`${ns}.event.>`] },
    /** Page lifecycle: connected, disconnected, token updated, status changed. */
    pages: { name: `${NS}_PAGES`, subjects: [`${ns}.page.>`] },
    /** Facts for the product: message created, status changed, conversation created, sent, failed. */
    domain: { name: `${NS}_DOMAIN`, subjects: [`${ns}.domain.>`] },
    /** Outgoing sends waiting for a worker (work queue). */
    sends: { name: `${NS}_SENDS`, subjects: [`${ns}.send.>`] },
    /** Per-page reconcile jobs (work queue). */
    reconcile: { name: `${NS}_RECONCILE`, subjects: [`${ns}.reconcile.>`] },
    /**
     * A page's entries beyond its fair share while other pages wait (work queue, one subject per page):
     * moved off the shared consumer so they hold none of its slots, drained round-robin across pages.
     */
    overflow: { name: `${NS}_OVERFLOW`, subjects: [`${ns}.overflow.>`] },
    /** Messages that failed for good, with the reason in headers; replayable. */
    deadLetter: { name: `${NS}_DLQ`, subjects: [`${ns}.dlq.>`] },
  } as const;

  const subjects = {
    webhookEntry: (pageId: string) => `${ns}.webhook.entry.${token(pageId)}`,
    webhookEntries: `${ns}.webhook.entry.>`,
    unrouted: (pageId: string) => `${ns}.unrouted.${token(pageId)}`,
    unroutedAll: `${ns}.unrouted.>`,
    messagingEvent: (pageId: string) => `${ns}.event.messaging.${token(pageId)}`,
    messagingEvents: `${ns}.event.messaging.>`,
    /** The webhook canary's events (on the events stream, beside the messaging events it never mixes with). */
    canaryEvent: (pageId: string) => `${ns}.event.canary.${token(pageId)}`,
    canaryEvents: `${ns}.event.canary.>`,
    pageLifecycle: (type: string, pageId: string) => `${ns}.page.${token(type)}.${token(pageId)}`,
    pageLifecycleAll: `${ns}.page.>`,
    domainEvent: (type: string, pageId: string) => `${ns}.domain.${token(type)}.${token(pageId)}`,
    domainEvents: `${ns}.domain.>`,
    sendRequest: (pageId: string) => `${ns}.send.${token(pageId)}`,
    sendRequests: `${ns}.send.>`,
    reconcileJob: (pageId: string) => `${ns}.reconcile.${token(pageId)}`,
    reconcileJobs: `${ns}.reconcile.>`,
    pageOverflow: (pageId: string) => `${ns}.overflow.${token(pageId)}`,
    pageOverflows: `${ns}.overflow.>`,
    deadLetter: (stage: string) => `${ns}.dlq.${token(stage)}`,
    deadLetters: `${ns}.dlq.>`,
  } as const;

  /** JetStream Object Store buckets. */
  const buckets = {
    /** Entries larger than the broker's max payload; the stream message carries `Sb-Entry-Ref`. */
    largeEntries: `${NS}_LARGE_ENTRIES`,
  } as const;

  const consumers = {
    pageRouter: `${ns}-page-router`,
    messageService: `${ns}-message-service`,
    subscriptionService: `${ns}-subscription-service`,
    sendWorker: `${ns}-send-worker`,
    reconcileWorker: `${ns}-reconcile-worker`,
    canarySink: `${ns}-canary-sink`,
    /** The webhook-dispatcher's fan-out of domain events and of page lifecycle events to endpoints. */
    webhookDispatcher: `${ns}-webhook-dispatcher`,
    webhookDispatcherPages: `${ns}-webhook-dispatcher-pages`,
    /** One per page with an overflow (filtered on its subject); removed by JetStream once idle. */
    pageOverflowDrain: (pageId: string) => `${ns}-overflow-${token(pageId)}`,
  } as const;

  return { namespace: ns, streams, subjects, buckets, consumers };
}
export type BusTopology = ReturnType<typeof busTopology>;
export type StreamName = keyof BusTopology["streams"];

/**
 * What each stream keeps and for how long: the settings `pnpm bus:migrate` (the streams' one owner) applies.
 * Services only check that the streams exist; they never create or change them.
 */
export interface StreamPolicy {
  /** `workqueue`: a message is gone once acknowledged; `limits`: kept until its age or size limit. */
  retention: "limits" | "workqueue";
  /** 0 = kept until someone replays or purges it. */
  maxAgeMs: number;
  /** `new`: a full stream refuses new messages (nothing already kept is lost); `old`: drops the oldest. */
  discard: "old" | "new";
  /** Where a stream must be bounded in bytes (kept-for-replay streams), the variable that sizes it. */
  maxBytesSetting?: "unrouted" | "deadLetter";
}

const DAY_MS = 86_400_000;

export const streamPolicies: Record<StreamName, StreamPolicy> = {
  webhooks: { retention: "limits", maxAgeMs: 7 * DAY_MS, discard: "old" },
  events: { retention: "limits", maxAgeMs: 7 * DAY_MS, discard: "old" },
  pages: { retention: "limits", maxAgeMs: 30 * DAY_MS, discard: "old" },
  domain: { retention: "limits", maxAgeMs: 30 * DAY_MS, discard: "old" },
  sends: { retention: "workqueue", maxAgeMs: 7 * DAY_MS, discard: "old" },
  reconcile: { retention: "workqueue", maxAgeMs: 7 * DAY_MS, discard: "old" },
  // As long as the webhooks stream keeps the entries it was taken from.
  overflow: { retention: "workqueue", maxAgeMs: 7 * DAY_MS, discard: "old" },
  // Kept until replayed or purged, bounded in bytes so they can never fill the JetStream store that the
  // healthy pages' entries need; refusing new ones beats dropping old ones silently.
  unrouted: { retention: "limits", maxAgeMs: 0, discard: "new", maxBytesSetting: "unrouted" },
  deadLetter: { retention: "limits", maxAgeMs: 0, discard: "new", maxBytesSetting: "deadLetter" },
};

/** Header names Switchboard sets on bus messages (JetStream's own `Nats-Msg-Id` besides). */
export const Headers = {
  traceId: "Sb-Trace-Id",
  receivedAt: "Sb-Received-At",
  pageId: "Sb-Page-Id",
  reason: "Sb-Reason",
  stage: "Sb-Stage",
  originalSubject: "Sb-Original-Subject",
  failedAt: "Sb-Failed-At",
  deliveries: "Sb-Deliveries",
  eventType: "Sb-Event-Type",
  /** Name of the object (in the large-entries bucket) that holds an entry too large for one message. */
  entryRef: "Sb-Entry-Ref",
  /** The webhook body's `object` an entry came in (`page`, `instagram`). */
  object: "Sb-Object",
  /** The platform that object means (`messenger`, `instagram`): see `platformOfObject`. */
  platform: "Sb-Platform",
} as const;

/**
 * Headers of an entry kept on the unrouted stream: why, for which page, and the subject a replay
 * (`pnpm sb unrouted replay`, the page-router's sweep) sends it back to.
 */
export function unroutedHeaders(parked: { pageId: string; reason: string; originalSubject: string }) {
  return {
    [Headers.reason]: parked.reason.slice(0, 1000),
    [Headers.pageId]: parked.pageId,
    [Headers.originalSubject]: parked.originalSubject,
    [Headers.failedAt]: new Date().toISOString(),
  };
}
