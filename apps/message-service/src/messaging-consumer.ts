import {
  type Bus,
  createBatcher,
  decodeMessage,
  type JsMsg,
  PermanentError,
  RetryLaterError,
  type RunningConsumer,
  runConsumer,
  type Settled,
} from "@switchboard/bus";
import { MessagingEvent } from "@switchboard/contracts";
import type { TokenCipher } from "@switchboard/crypto";
import { type Db, isDataRejection, postgresErrorOf } from "@switchboard/db";
import type { Logger } from "pino";
import type { ConversationLock } from "./conversation-lock";
import { createOutboxPublisher } from "./domain-events";
import { type StoreResult, storeMessagingEvent, storeMessagingEvents } from "./message-store";
import type { MessageMetrics } from "./metrics";

export interface MessagingConsumerOptions {
  bus: Bus;
  db: Db;
  lock: ConversationLock;
  log: Logger;
  metrics: MessageMetrics;
  /** Messages in flight in this replica (waiting for a batch, or in one). */
  concurrency?: number;
  /** Events stored together in one lock call and one transaction at most (default 100). */
  batchSize?: number;
  /** How long an event waits for company when nothing else is running (default 2 ms). */
  batchWaitMs?: number;
  /** Deliveries of a message whose conversation stays locked before it is dead-lettered. */
  maxLockAttempts?: number;
  /** Deliveries after unexpected errors before dead-lettering (an outage pauses instead: probeDependencies). */
  maxTransientAttempts?: number;
  /** Database and lock quorum: while they are down the consumer pauses rather than spending attempts. */
  probeDependencies?: () => Promise<void>;
  handlerTimeoutMs?: number;
  /** Our Meta app id (`FB_APP_ID`), to tell our echoes from other apps' and Meta's inbox's. */
  appId?: string;
  /** Encrypts people's notification-message tokens before they are stored. */
  cipher?: TokenCipher;
}

/**
 * Stores every messaging event of every page in batches: parse each message → gather what the consumer
 * has (`batchSize`, waiting at most `batchWaitMs`) → lock all its conversations in one Redlock call → one
 * transaction for the batch (rows + outbox) → publish the batch's domain events pipelined → ack each
 * message. A redelivery finds everything stored and acks.
 *
 * A batch that cannot go whole (a conversation held by another replica, an event the database refuses)
 * is split: each event goes on its own under its own conversation's lock, so only that event waits,
 * retries or is dead-lettered, and its neighbours are stored.
 */
export function startMessagingConsumer(options: MessagingConsumerOptions): Promise<RunningConsumer> {
  const { bus, db, lock, log, metrics } = options;
  const { topology } = bus;
  // The kind of each message being handled, for the outcome metric (invalid ones never get one).
  const kinds = new WeakMap<JsMsg, MessagingEvent["kind"]>();
  const publishOutbox = createOutboxPublisher(bus.js, db);

  /** After commit: the domain events in commit order (one connection, acks awaited together). */
  const publishCommitted = async (results: StoreResult[]) => {
    const rows = results.flatMap((r) => r.outbox);
    if (rows.length === 0) return;
    try {
      await publishOutbox(rows);
      for (const row of rows) {
        metrics.domainEventsPublished.inc({
          type: "type" in row.payload ? row.payload.type : "send.request",
        });
      }
    } catch (error) {
      // Committed: the outbox relay publishes these later. Failing here would only redeliver no-ops.
      log.warn({ err: error, domainEvents: rows.length }, "domain events left to the outbox relay");
    }
  };

  const storeAlone = async (event: MessagingEvent): Promise<Settled<StoreResult>> => {
    try {
      const result = await lock.withConversationLock(event, (signal) =>
        storeMessagingEvent(db, topology, event, { signal, appId: options.appId, cipher: options.cipher }),
      );
      await publishCommitted([result]);
      return { ok: true, value: result };
    } catch (error) {
      // Alone and refused for its data (dependencies answered: this is not an outage): a poison message.
      if (isDataRejection(error)) {
        const refusal = postgresErrorOf(error);
        return {
          ok: false,
          error: new PermanentError(
            `the database refused messaging event ${event.eventId}: ${refusal?.code} ${refusal?.message}`,
            { cause: error },
          ),
        };
      }
      return { ok: false, error };
    }
  };

  const storeBatch = async (events: MessagingEvent[]): Promise<Array<Settled<StoreResult>>> => {
    if (events.length === 1) {
      // A batch of one: one lock call and one transaction too.
      const outcome = await storeAlone(events[0]!);
      if (outcome.ok) metrics.batchSize.observe(1);
      return [outcome];
    }
    let results: StoreResult[];
    try {
      results = await lock.withConversationLocks(events, (signal) =>
        storeMessagingEvents(db, topology, events, { signal, appId: options.appId, cipher: options.cipher }),
      );
    } catch (error) {
      metrics.batchesSplit.inc({ reason: error instanceof RetryLaterError ? "lock_held" : "error" });
      log.debug({ err: error, events: events.length }, "batch split: each event on its own");
      return Promise.all(events.map(storeAlone));
    }
    metrics.batchSize.observe(events.length);
    await publishCommitted(results);
    return results.map((value) => ({ ok: true, value }));
  };

  const batcher = createBatcher<MessagingEvent, StoreResult>({
    run: storeBatch,
    maxSize: options.batchSize ?? 100,
    maxWaitMs: options.batchWaitMs ?? 2,
  });

  const handle = async (msg: JsMsg) => {
    const event = decodeMessage(msg, MessagingEvent, "messaging event");
    kinds.set(msg, event.kind);
    const result = await batcher.add(event);
    const committedAt = Date.now();
    for (const stored of result.storedMessages) {
      metrics.messagesStored.inc({ direction: stored.direction });
      metrics.processingSeconds.observe(Math.max(0, committedAt - stored.sentAt.getTime()) / 1000);
    }
    log.debug(
      {
        pageId: event.pageId,
        psid: event.psid,
        kind: event.kind,
        eventId: event.eventId,
        domainEvents: result.outbox.length,
      },
      result.outbox.length === 0 ? "messaging event already applied" : "messaging event stored",
    );
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
