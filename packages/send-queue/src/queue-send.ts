import { randomUUID } from "node:crypto";
import { type Bus, publishJson } from "@switchboard/bus";
import {
  type DomainEvent,
  domainEventId,
  Headers,
  type MessageStatus,
  type SendMessageRequest,
  type SendRequest,
} from "@switchboard/contracts";
import { type Db, isUniqueViolation, type Message, type Prisma } from "@switchboard/db";

/**
 * Queues one outgoing message: the `messages` row first (status `sending`, so the id the caller gets is
 * real and the Idempotency-Key is enforced by the unique index on (page_id, idempotency_key)), then a
 * `SendRequest` on the work queue with `Nats-Msg-Id` = the message id. The send worker does the rest.
 * Used by the HTTP API and the operator CLI alike.
 */
export interface QueueSendDeps {
  db: Db;
  bus: Bus;
}

export interface QueueSendInput {
  pageId: string;
  psid: string;
  content: SendMessageRequest;
  idempotencyKey?: string;
  origin: SendRequest["origin"];
  traceId?: string;
}

export interface QueuedSend {
  id: string;
  status: MessageStatus;
  /** True when the Idempotency-Key matched an earlier request: nothing new was queued. */
  replayed: boolean;
}

/** What the worker reads back from `messages.payload` to build the Send API call. */
export interface OutgoingPayload {
  request: Omit<SendMessageRequest, "text">;
}

export class PageUnavailableError extends Error {
  constructor(
    readonly pageId: string,
    readonly pageStatus: string | null,
  ) {
    super(
      pageStatus === null
        ? `page ${pageId} is not connected`
        : `page ${pageId} cannot send: its status is ${pageStatus}`,
    );
    this.name = "PageUnavailableError";
  }
}

/** The same Idempotency-Key was used for another conversation of the page. */
export class IdempotencyKeyReusedError extends Error {
  constructor(readonly idempotencyKey: string) {
    super("this Idempotency-Key was already used for a message to another person");
    this.name = "IdempotencyKeyReusedError";
  }
}

/** The row could not be queued (the broker did not acknowledge); it was removed, so a retry is safe. */
export class SendQueueUnavailableError extends Error {
  constructor(options?: ErrorOptions) {
    super("the send queue is unavailable, try again", options);
    this.name = "SendQueueUnavailableError";
  }
}

export async function queueSend({ db, bus }: QueueSendDeps, input: QueueSendInput): Promise<QueuedSend> {
  const page = await db.pageConnection.findUnique({ where: { pageId: input.pageId } });
  if (page?.status !== "active") throw new PageUnavailableError(input.pageId, page?.status ?? null);

  if (input.idempotencyKey) {
    const earlier = await replayIdempotent(db, bus, input);
    if (earlier) return earlier;
  }

  let created: { message: Message; events: OutboxEvent[] };
  try {
    created = await db.$transaction((tx) => insertOutgoing(tx, bus, input));
  } catch (error) {
    // A concurrent request with the same Idempotency-Key won the unique index: answer with its row.
    if (input.idempotencyKey && isUniqueViolation(error)) {
      const earlier = await replayIdempotent(db, bus, input);
      if (earlier) return earlier;
    }
    throw error;
  }
  const { message, events } = created;

  try {
    await enqueue(bus, message, input);
  } catch (error) {
    // Nothing was sent: drop the row (and its `message.created`) so the client's retry starts clean.
    await db.$transaction([
      db.message.deleteMany({ where: { id: message.id, status: "sending", mid: null } }),
      db.domainEventOutbox.deleteMany({ where: { id: domainEventId(messageCreated(message, input)) } }),
    ]);
    throw new SendQueueUnavailableError({ cause: error });
  }

  // Committed with the row; if the broker fails now, the message-service's outbox relay publishes them.
  try {
    for (const event of events) {
      await publishJson(bus.js, event.subject, event.payload, {
        msgId: event.id,
        headers: { [Headers.eventType]: event.payload.type, [Headers.pageId]: event.payload.pageId },
      });
    }
    await db.domainEventOutbox.deleteMany({ where: { id: { in: events.map((e) => e.id) } } });
  } catch {
    // Left in the outbox on purpose.
  }
  return { id: message.id, status: message.status, replayed: false };
}

interface OutboxEvent {
  id: string;
  subject: string;
  payload: DomainEvent;
}

function messageCreated(message: Message, input: QueueSendInput): DomainEvent & { type: "message.created" } {
  return {
    type: "message.created",
    messageId: message.id,
    conversationId: message.conversationId,
    pageId: input.pageId,
    psid: input.psid,
    mid: null,
    direction: "outgoing",
    kind: message.kind,
    sentAt: message.sentAt.getTime(),
    occurredAt: message.createdAt.getTime(),
  };
}

async function replayIdempotent(db: Db, bus: Bus, input: QueueSendInput): Promise<QueuedSend | undefined> {
  const earlier = await db.message.findUnique({
    where: { pageId_idempotencyKey: { pageId: input.pageId, idempotencyKey: input.idempotencyKey! } },
    include: { conversation: { include: { contact: { select: { psid: true } } } } },
  });
  if (!earlier) return undefined;
  if (earlier.conversation.contact.psid !== input.psid) {
    throw new IdempotencyKeyReusedError(input.idempotencyKey!);
  }
  // The first request may have died between the insert and the publish: queue again. The stream drops the
  // repeat within its duplicate window, and the worker skips a row that is no longer `sending`.
  if (earlier.status === "sending") await enqueue(bus, earlier, input);
  return { id: earlier.id, status: earlier.status, replayed: true };
}

async function insertOutgoing(tx: Prisma.TransactionClient, bus: Bus, input: QueueSendInput) {
  const now = new Date();
  // INSERT … ON CONFLICT so concurrent first messages to a new person agree on one contact and conversation.
  const [contact] = await tx.$queryRaw<Array<{ id: string }>>`
    INSERT INTO contacts (id, page_id, psid, created_at, updated_at)
    VALUES (gen_random_uuid(), ${input.pageId}, ${input.psid}, ${now}, ${now})
    ON CONFLICT (page_id, psid) DO UPDATE SET psid = EXCLUDED.psid
    RETURNING id`;
  const [conversation] = await tx.$queryRaw<Array<{ id: string; inserted: boolean }>>`
    INSERT INTO conversations (id, page_id, contact_id, last_message_at, created_at, updated_at)
    VALUES (gen_random_uuid(), ${input.pageId}, ${contact!.id}::uuid, ${now}, ${now}, ${now})
    ON CONFLICT (page_id, contact_id) DO UPDATE
      SET last_message_at = GREATEST(conversations.last_message_at, EXCLUDED.last_message_at),
          updated_at = EXCLUDED.updated_at
    RETURNING id, (xmax = 0) AS inserted`;
  const { text, ...request } = input.content;
  const payload: OutgoingPayload = { request };
  const message = await tx.message.create({
    data: {
      pageId: input.pageId,
      conversationId: conversation!.id,
      direction: "outgoing",
      kind: text === undefined ? "attachment" : "text",
      text: text ?? null,
      payload: payload as unknown as Prisma.InputJsonValue,
      status: "sending",
      sentAt: now,
      idempotencyKey: input.idempotencyKey ?? null,
    },
  });
  const facts: Array<DomainEvent & { type: "message.created" | "conversation.created" }> = [
    ...(conversation!.inserted
      ? [
          {
            type: "conversation.created" as const,
            conversationId: conversation!.id,
            pageId: input.pageId,
            psid: input.psid,
            occurredAt: now.getTime(),
          },
        ]
      : []),
    messageCreated(message, input),
  ];
  const events: OutboxEvent[] = facts.map((payload) => ({
    id: domainEventId(payload),
    subject: bus.topology.subjects.domainEvent(payload.type, payload.pageId),
    payload,
  }));
  await tx.domainEventOutbox.createMany({
    data: events.map((e) => ({ ...e, payload: e.payload as unknown as Prisma.InputJsonValue })),
    skipDuplicates: true,
  });
  return { message, events };
}

async function enqueue(bus: Bus, message: Message, input: QueueSendInput) {
  const request: SendRequest = {
    messageId: message.id,
    pageId: message.pageId,
    psid: input.psid,
    origin: input.origin,
    requestedAt: Date.now(),
    traceId: input.traceId ?? randomUUID(),
  };
  await publishJson(bus.js, bus.topology.subjects.sendRequest(message.pageId), request, {
    msgId: message.id,
    headers: { [Headers.traceId]: request.traceId, [Headers.pageId]: message.pageId },
  });
}
