import { randomUUID } from "node:crypto";
import { type Bus, publishJson } from "@switchboard/bus";
import {
  type DomainEvent,
  domainEventId,
  Headers,
  type MessageStatus,
  type Platform,
  type SendMessageRequest,
  type SendRequest,
  sendRequestMsgId,
} from "@switchboard/contracts";
import { type Db, isUniqueViolation, type Message, type Prisma } from "@switchboard/db";

/**
 * Queues one outgoing message: the `messages` row (status `sending`, so the id the caller gets is real and
 * the Idempotency-Key is enforced by the unique index on (page_id, idempotency_key)) and its `SendRequest`
 * are committed together — the request as an outbox row — then published. If the broker is down or the
 * process dies after the commit, the message-service's outbox relay publishes the request: a committed
 * row is never left without its request. Used by the HTTP API and the operator CLI alike.
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
    readonly statusReason: string | null = null,
  ) {
    super(
      pageStatus === null
        ? `page ${pageId} is not connected`
        : `page ${pageId} cannot send: its status is ${pageStatus}${statusReason ? ` (${statusReason})` : ""}`,
    );
    this.name = "PageUnavailableError";
  }
}

/**
 * What the page's platform cannot send: Instagram's Send API takes text and image, video and audio
 * attachments, not files (https://developers.facebook.com/docs/instagram-platform/instagram-api-with-instagram-login/messaging-api).
 */
export class UnsupportedOnPlatformError extends Error {
  constructor(
    readonly platform: Platform,
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = "UnsupportedOnPlatformError";
  }
}

export function checkContentForPlatform(platform: Platform, content: SendMessageRequest): void {
  if (platform !== "instagram") return;
  if (content.attachment?.type === "file") {
    throw new UnsupportedOnPlatformError(
      platform,
      "attachment.type",
      "Instagram accounts cannot send file attachments (image, video or audio only)",
    );
  }
  if (content.messaging_type === "MESSAGE_TAG" && content.tag !== "HUMAN_AGENT") {
    throw new UnsupportedOnPlatformError(
      platform,
      "tag",
      "Instagram accepts only the HUMAN_AGENT tag outside the 24-hour window",
    );
  }
}

/** The same Idempotency-Key was used for another conversation of the page. */
export class IdempotencyKeyReusedError extends Error {
  constructor(readonly idempotencyKey: string) {
    super("this Idempotency-Key was already used for a message to another person");
    this.name = "IdempotencyKeyReusedError";
  }
}

export async function queueSend({ db, bus }: QueueSendDeps, input: QueueSendInput): Promise<QueuedSend> {
  const page = await db.pageConnection.findUnique({ where: { pageId: input.pageId } });
  if (page?.status !== "active") {
    throw new PageUnavailableError(input.pageId, page?.status ?? null, page?.statusReason ?? null);
  }
  checkContentForPlatform(page.platform, input.content);

  if (input.idempotencyKey) {
    const earlier = await replayIdempotent(db, input);
    if (earlier) return earlier;
  }

  let created: { message: Message; rows: OutboxEvent[] };
  try {
    created = await db.$transaction((tx) => insertOutgoing(tx, bus, input, page.platform));
  } catch (error) {
    // A concurrent request with the same Idempotency-Key won the unique index: answer with its row.
    if (input.idempotencyKey && isUniqueViolation(error)) {
      const earlier = await replayIdempotent(db, input);
      if (earlier) return earlier;
    }
    throw error;
  }
  const { message, rows } = created;
  // Committed with the row; if the broker fails now, the message-service's outbox relay publishes them.
  await publishCommitted(db, bus, rows).catch(() => undefined);
  return { id: message.id, status: message.status, replayed: false };
}

/** Publishes outbox rows in order (the request last, after the facts about its message), then removes them. */
async function publishCommitted(db: Db, bus: Bus, rows: OutboxEvent[]) {
  for (const row of rows) {
    await publishJson(bus.js, row.subject, row.payload, {
      msgId: row.id,
      headers: {
        [Headers.eventType]: "type" in row.payload ? row.payload.type : "send.request",
        [Headers.pageId]: row.payload.pageId,
        ...("traceId" in row.payload ? { [Headers.traceId]: row.payload.traceId } : {}),
      },
    });
  }
  await db.domainEventOutbox.deleteMany({ where: { id: { in: rows.map((r) => r.id) } } });
}

interface OutboxEvent {
  id: string;
  subject: string;
  payload: DomainEvent | SendRequest;
}

function messageCreated(message: Message, input: QueueSendInput): DomainEvent & { type: "message.created" } {
  return {
    type: "message.created",
    messageId: message.id,
    conversationId: message.conversationId,
    pageId: input.pageId,
    platform: message.platform,
    psid: input.psid,
    mid: null,
    direction: "outgoing",
    kind: message.kind,
    sentAt: message.sentAt.getTime(),
    occurredAt: message.createdAt.getTime(),
  };
}

async function replayIdempotent(db: Db, input: QueueSendInput): Promise<QueuedSend | undefined> {
  const earlier = await db.message.findUnique({
    where: { pageId_idempotencyKey: { pageId: input.pageId, idempotencyKey: input.idempotencyKey! } },
    include: { conversation: { include: { contact: { select: { psid: true } } } } },
  });
  if (!earlier) return undefined;
  if (earlier.conversation.contact.psid !== input.psid) {
    throw new IdempotencyKeyReusedError(input.idempotencyKey!);
  }
  // The request was committed with the row: the outbox relay (or the sweeper) sees it through.
  return { id: earlier.id, status: earlier.status, replayed: true };
}

async function insertOutgoing(
  tx: Prisma.TransactionClient,
  bus: Bus,
  input: QueueSendInput,
  platform: Platform,
) {
  const now = new Date();
  // INSERT … ON CONFLICT so concurrent first messages to a new person agree on one contact and conversation.
  const [contact] = await tx.$queryRaw<Array<{ id: string }>>`
    INSERT INTO contacts (id, page_id, psid, created_at, updated_at)
    VALUES (gen_random_uuid(), ${input.pageId}, ${input.psid}, ${now}, ${now})
    ON CONFLICT (page_id, psid) DO UPDATE SET psid = EXCLUDED.psid
    RETURNING id`;
  const [conversation] = await tx.$queryRaw<Array<{ id: string; inserted: boolean }>>`
    INSERT INTO conversations (id, page_id, contact_id, platform, last_message_at, created_at, updated_at)
    VALUES (gen_random_uuid(), ${input.pageId}, ${contact!.id}::uuid, ${platform}::platform, ${now}, ${now}, ${now})
    ON CONFLICT (page_id, contact_id) DO UPDATE
      SET last_message_at = GREATEST(conversations.last_message_at, EXCLUDED.last_message_at),
          updated_at = EXCLUDED.updated_at
    RETURNING id, (xmax = 0) AS inserted`;
  const { text, ...request } = input.content;
  const payload: OutgoingPayload = { request };
  const message = await tx.message.create({
    data: {
      pageId: input.pageId,
      platform,
      conversationId: conversation!.id,
      direction: "outgoing",
      kind: text === undefined ? "attachment" : "text",
      text: text ?? null,
      payload: payload as unknown as Prisma.InputJsonValue,
      status: "sending",
      sentAt: now,
      sentBy: "switchboard",
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
            platform,
            psid: input.psid,
            occurredAt: now.getTime(),
          },
        ]
      : []),
    messageCreated(message, input),
  ];
  const rows: OutboxEvent[] = [
    ...facts.map((payload) => ({
      id: domainEventId(payload),
      subject: bus.topology.subjects.domainEvent(payload.type, payload.pageId),
      payload,
    })),
    sendRequestRow(bus, message, input),
  ];
  await tx.domainEventOutbox.createMany({
    data: rows.map((e) => ({ ...e, payload: e.payload as unknown as Prisma.InputJsonValue })),
    skipDuplicates: true,
  });
  return { message, rows };
}

function sendRequestRow(bus: Bus, message: Message, input: QueueSendInput): OutboxEvent {
  const request: SendRequest = {
    messageId: message.id,
    pageId: message.pageId,
    platform: message.platform,
    psid: input.psid,
    origin: input.origin,
    requestedAt: Date.now(),
    traceId: input.traceId ?? randomUUID(),
  };
  return {
    id: sendRequestMsgId(message.id),
    subject: bus.topology.subjects.sendRequest(message.pageId),
    payload: request,
  };
}
