import { type Bus, decodeMessage, type JsMsg, type RunningConsumer, runConsumer } from "@switchboard/bus";
import { MessagingEvent } from "@switchboard/contracts";
import type { Db } from "@switchboard/db";
import type { Logger } from "pino";
import type { ConversationLock } from "./conversation-lock";
import { createOutboxPublisher } from "./domain-events";
import { storeMessagingEvent } from "./message-store";
import type { MessageMetrics } from "./metrics";

export interface MessagingConsumerOptions {
  bus: Bus;
  db: Db;
  lock: ConversationLock;
  log: Logger;
  metrics: MessageMetrics;
  concurrency?: number;
  /** Deliveries of a message whose conversation stays locked before it is dead-lettered. */
  maxLockAttempts?: number;
  /** Deliveries after unexpected errors before dead-lettering (an outage pauses instead: probeDependencies). */
  maxTransientAttempts?: number;
  /** Database and lock quorum: while they are down the consumer pauses rather than spending attempts. */
  probeDependencies?: () => Promise<void>;
  handlerTimeoutMs?: number;
}

/**
 * Stores every messaging event of every page: parse → lock the conversation → one transaction (rows +
 * outbox) → publish the domain events. A redelivery finds everything stored and acks.
 */
export function startMessagingConsumer(options: MessagingConsumerOptions): Promise<RunningConsumer> {
  const { bus, db, lock, log, metrics } = options;
  const { topology } = bus;
  // The kind of each message being handled, for the outcome metric (invalid ones never get one).
  const kinds = new WeakMap<JsMsg, MessagingEvent["kind"]>();
  const publishOutbox = createOutboxPublisher(bus.js, db);

  const handle = async (msg: JsMsg) => {
    const event = decodeMessage(msg, MessagingEvent, "messaging event");
    kinds.set(msg, event.kind);
    const fields = { pageId: event.pageId, psid: event.psid, kind: event.kind, eventId: event.eventId };
    const result = await lock.withConversationLock(event.psid, event.pageId, (signal) =>
      storeMessagingEvent(db, topology, event, { signal }),
    );
    const committedAt = Date.now();
    for (const stored of result.storedMessages) {
      metrics.messagesStored.inc({ page_id: event.pageId, direction: stored.direction });
      metrics.processingSeconds.observe(Math.max(0, committedAt - stored.sentAt.getTime()) / 1000);
    }
    if (result.outbox.length === 0) {
      log.debug(fields, "messaging event already applied");
      return;
    }
    try {
      await publishOutbox(result.outbox);
      for (const row of result.outbox) {
        metrics.domainEventsPublished.inc({
          type: "type" in row.payload ? row.payload.type : "send.request",
        });
      }
    } catch (error) {
      // Committed: the outbox relay publishes these later. Failing here would only redeliver a no-op.
      log.warn({ ...fields, err: error }, "domain events left to the outbox relay");
    }
    log.debug({ ...fields, domainEvents: result.outbox.length }, "messaging event stored");
  };

  return runConsumer({
    js: bus.js,
    jsm: bus.jsm,
    topology,
    stream: topology.streams.events.name,
    durable: topology.consumers.messageService,
    filterSubject: topology.subjects.messagingEvents,
    stage: "message-service",
    log,
    handle,
    concurrency: options.concurrency,
    maxRetryLaterAttempts: options.maxLockAttempts,
    maxTransientAttempts: options.maxTransientAttempts,
    probeDependencies: options.probeDependencies,
    handlerTimeoutMs: options.handlerTimeoutMs,
    onOutcome: (outcome, msg) => metrics.events.inc({ kind: kinds.get(msg) ?? "invalid", outcome }),
  });
}
