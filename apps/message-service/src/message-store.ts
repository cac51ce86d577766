import { randomUUID } from "node:crypto";
import type {
  BusTopology,
  DeliveryEvent,
  DomainEvent,
  EchoEvent,
  IncomingMessageEvent,
  MessageStatus,
  MessagingEvent,
  PostbackEvent,
  ReactionEvent,
  ReadEvent,
} from "@switchboard/contracts";
import { type Db, Prisma } from "@switchboard/db";
import { type OutboxRow, outboxRow, writeOutbox } from "./domain-events";

type Tx = Prisma.TransactionClient;

/** What one event changed: the domain events to publish after commit and the messages it stored. */
export interface StoreResult {
  outbox: OutboxRow[];
  storedMessages: Array<{ messageId: string; direction: "incoming" | "outgoing"; sentAt: Date }>;
}

interface ConversationRow {
  id: string;
  inserted: boolean;
  deliveredWatermark: Date | null;
  readWatermark: Date | null;
}

/** Outgoing status order: a status only moves right. `failed` ranks with `sending`: an echo proves it went out. */
const OUTGOING_RANK: Record<MessageStatus, number> = {
  received: 0,
  sending: 0,
  failed: 0,
  sent: 1,
  delivered: 2,
  read: 3,
};

export interface StoreOptions {
  /** Checked just before commit: when the lock was lost, the transaction rolls back. */
  signal?: AbortSignal & { error?: Error };
  now?: () => Date;
}

/**
 * Applies one messaging event in one transaction: contact, conversation, the event's own effect and the
 * domain events it causes (outbox). Idempotent: applying the same event again changes nothing and
 * produces no domain event, whatever order events of a conversation arrive in.
 */
export async function storeMessagingEvent(
  db: Db,
  topology: BusTopology,
  event: MessagingEvent,
  options: StoreOptions = {},
): Promise<StoreResult> {
  const now = options.now ?? (() => new Date());
  if (event.kind === "message" || event.kind === "postback") {
    return storeIncoming(db, topology, event, incomingRow(event), options.signal, now);
  }
  return db.$transaction(
    async (tx) => {
      const result: StoreResult = { outbox: [], storedMessages: [] };
      const publish = (e: DomainEvent) => result.outbox.push(outboxRow(topology, e));
      const lastMessageAt = event.kind === "echo" ? new Date(event.timestamp) : null;
      const conversation = await upsertConversation(tx, event, lastMessageAt);
      if (conversation.inserted) {
        publish({
          type: "conversation.created",
          conversationId: conversation.id,
          pageId: event.pageId,
          psid: event.psid,
          occurredAt: now().getTime(),
        });
      }
      const context: Context = { tx, event, conversation, publish, result, now };
      switch (event.kind) {
        case "echo":
          await storeEcho(context, event);
          break;
        case "delivery":
          await storeDelivery(context, event);
          break;
        case "read":
          await storeRead(context, event);
          break;
        case "reaction":
          await storeReaction(context, event);
          break;
        case "referral":
        case "optin":
        case "unsupported":
          await storeConversationEvent(
            context,
            event.kind,
            event.kind === "unsupported" ? { reason: event.reason, raw: event.raw } : event.raw,
          );
          break;
      }
      await writeOutbox(tx, result.outbox);
      if (options.signal?.aborted) throw options.signal.error ?? new Error("conversation lock lost");
      return result;
    },
    // A busy pool makes a transaction wait; waiting beats failing and redelivering.
    { maxWait: 10_000, timeout: 20_000 },
  );
}

interface Context {
  tx: Tx;
  event: MessagingEvent;
  conversation: ConversationRow;
  publish: (e: DomainEvent) => void;
  result: StoreResult;
  now: () => Date;
}

/** The contact of an event, created or refreshed with the profile a message carries; returns its id. */
function contactUpsert(event: MessagingEvent): Prisma.Sql {
  const profile = event.kind === "message" ? event.profile : null;
  // A profile from the router's cache is not news: only a fresh fetch moves `profile_fetched_at`.
  const fetchedAt =
    event.kind === "message" && event.profileStatus === "fetched" && profile ? new Date() : null;
  return Prisma.sql`
    INSERT INTO contacts (id, page_id, psid, first_name, last_name, profile_pic_url, profile_fetched_at, updated_at)
    VALUES (gen_random_uuid(), ${event.pageId}, ${event.psid}, ${profile?.firstName ?? null}::text,
            ${profile?.lastName ?? null}::text, ${profile?.profilePicUrl ?? null}::text,
            ${fetchedAt}::timestamptz, now())
    ON CONFLICT (page_id, psid) DO UPDATE SET
      first_name = COALESCE(EXCLUDED.first_name, contacts.first_name),
      last_name = COALESCE(EXCLUDED.last_name, contacts.last_name),
      profile_pic_url = COALESCE(EXCLUDED.profile_pic_url, contacts.profile_pic_url),
      profile_fetched_at = COALESCE(EXCLUDED.profile_fetched_at, contacts.profile_fetched_at),
      updated_at = CASE WHEN EXCLUDED.first_name IS NULL AND EXCLUDED.last_name IS NULL
        AND EXCLUDED.profile_pic_url IS NULL THEN contacts.updated_at ELSE now() END
    RETURNING id`;
}

async function upsertConversation(
  tx: Tx,
  event: MessagingEvent,
  lastMessageAt: Date | null,
): Promise<ConversationRow> {
  const [contact] = await tx.$queryRaw<Array<{ id: string }>>(contactUpsert(event));
  if (!contact) throw new Error("INVARIANT: contact upsert returned no row");
  const [conversation] = await tx.$queryRaw<ConversationRow[]>`
    INSERT INTO conversations (id, page_id, contact_id, last_message_at, updated_at)
    VALUES (gen_random_uuid(), ${event.pageId}, ${contact.id}::uuid, ${lastMessageAt}::timestamptz, now())
    ON CONFLICT (page_id, contact_id) DO UPDATE SET
      last_message_at = GREATEST(conversations.last_message_at, EXCLUDED.last_message_at),
      updated_at = now()
    RETURNING id, (xmax = 0) AS inserted, delivered_watermark AS "deliveredWatermark",
              read_watermark AS "readWatermark"`;
  if (!conversation) throw new Error("INVARIANT: conversation upsert returned no row");
  return conversation;
}

/** Inserts a message unless (page, mid) exists; true when this call stored it. */
async function insertMessage(
  context: Context,
  row: {
    mid: string;
    direction: "incoming" | "outgoing";
    kind: string;
    text: string | null;
    payload: unknown;
    status: MessageStatus;
    sentAt: Date;
  },
): Promise<boolean> {
  const { tx, event, conversation } = context;
  const id = randomUUID();
  const { count } = await tx.message.createMany({
    data: [
      {
        id,
        pageId: event.pageId,
        conversationId: conversation.id,
        mid: row.mid,
        direction: row.direction,
        kind: row.kind,
        text: row.text,
        payload: row.payload as Prisma.InputJsonValue,
        status: row.status,
        sentAt: row.sentAt,
      },
    ],
    skipDuplicates: true,
  });
  if (count === 0) return false;
  context.result.storedMessages.push({ messageId: id, direction: row.direction, sentAt: row.sentAt });
  context.publish({
    type: "message.created",
    messageId: id,
    conversationId: conversation.id,
    pageId: event.pageId,
    psid: event.psid,
    mid: row.mid,
    direction: row.direction,
    kind: row.kind,
    sentAt: row.sentAt.getTime(),
    occurredAt: context.now().getTime(),
  });
  return true;
}

interface IncomingRow {
  mid: string;
  kind: string;
  text: string | null;
  payload: unknown;
  sentAt: Date;
}

function incomingRow(event: IncomingMessageEvent | PostbackEvent): IncomingRow {
  if (event.kind === "postback") {
    return {
      // Older API versions send postbacks without a mid; the event id is stable for the same item.
      mid: event.mid ?? `postback:${event.eventId}`,
      kind: "postback",
      text: event.title,
      payload: { title: event.title, payload: event.payload, referral: event.referral, raw: event.raw },
      sentAt: new Date(event.timestamp),
    };
  }
  return {
    mid: event.mid,
    kind: event.attachments.length > 0 ? "attachment" : "text",
    text: event.text,
    payload: {
      attachments: event.attachments,
      quickReplyPayload: event.quickReplyPayload,
      replyToMid: event.replyToMid,
      raw: event.raw,
    },
    sentAt: new Date(event.timestamp),
  };
}

/**
 * Incoming messages and postbacks, most of the traffic, in ONE statement (no interactive transaction):
 * contact, conversation, message and outbox rows commit together or not at all, in one round trip. The
 * domain events' payloads get the conversation id in SQL; the same events are rebuilt here to publish.
 */
async function storeIncoming(
  db: Db,
  topology: BusTopology,
  event: IncomingMessageEvent | PostbackEvent,
  row: IncomingRow,
  signal: StoreOptions["signal"],
  now: () => Date,
): Promise<StoreResult> {
  const messageId = randomUUID();
  const occurredAt = now().getTime();
  const created = (conversationId: string): DomainEvent => ({
    type: "conversation.created",
    conversationId,
    pageId: event.pageId,
    psid: event.psid,
    occurredAt,
  });
  const messageCreated = (conversationId: string): DomainEvent => ({
    type: "message.created",
    messageId,
    conversationId,
    pageId: event.pageId,
    psid: event.psid,
    mid: row.mid,
    direction: "incoming",
    kind: row.kind,
    sentAt: row.sentAt.getTime(),
    occurredAt,
  });
  // The lock is checked before the statement that commits, as the transaction checks it before COMMIT.
  if (signal?.aborted) throw signal.error ?? new Error("conversation lock lost");
  const [stored] = await db.$queryRaw<
    Array<{ conversationId: string; inserted: boolean; messageStored: boolean }>
  >`
    WITH contact AS (${contactUpsert(event)}
    ), conversation AS (
      INSERT INTO conversations (id, page_id, contact_id, last_message_at, updated_at)
      SELECT gen_random_uuid(), ${event.pageId}, contact.id, ${row.sentAt}::timestamptz, now() FROM contact
      ON CONFLICT (page_id, contact_id) DO UPDATE SET
        last_message_at = GREATEST(conversations.last_message_at, EXCLUDED.last_message_at),
        updated_at = now()
      RETURNING id, (xmax = 0) AS inserted
    ), message AS (
      INSERT INTO messages (id, page_id, conversation_id, mid, direction, kind, text, payload, status, sent_at,
                            updated_at)
      SELECT ${messageId}::uuid, ${event.pageId}, conversation.id, ${row.mid}::text,
             'incoming'::message_direction, ${row.kind}::text, ${row.text}::text,
             ${JSON.stringify(row.payload)}::jsonb, 'received'::message_status, ${row.sentAt}::timestamptz, now()
      FROM conversation
      ON CONFLICT DO NOTHING
      RETURNING id
    ), outbox AS (
      INSERT INTO domain_event_outbox (id, subject, payload)
      SELECT 'conversation.created:' || conversation.id,
             ${topology.subjects.domainEvent("conversation.created", event.pageId)}::text,
             ${JSON.stringify(created(""))}::jsonb || jsonb_build_object('conversationId', conversation.id)
      FROM conversation WHERE conversation.inserted
      UNION ALL
      SELECT 'message.created:' || message.id,
             ${topology.subjects.domainEvent("message.created", event.pageId)}::text,
             ${JSON.stringify(messageCreated(""))}::jsonb || jsonb_build_object('conversationId', conversation.id)
      FROM message, conversation
      ON CONFLICT DO NOTHING
    )
    SELECT conversation.id AS "conversationId", conversation.inserted,
           EXISTS (SELECT 1 FROM message) AS "messageStored"
    FROM conversation`;
  if (!stored) throw new Error("INVARIANT: conversation upsert returned no row");
  const result: StoreResult = { outbox: [], storedMessages: [] };
  if (stored.inserted) result.outbox.push(outboxRow(topology, created(stored.conversationId)));
  if (stored.messageStored) {
    result.outbox.push(outboxRow(topology, messageCreated(stored.conversationId)));
    result.storedMessages.push({ messageId, direction: "incoming", sentAt: row.sentAt });
  }
  return result;
}

/** The status an outgoing message sent at `sentAt` has given the conversation's watermarks. */
function statusByWatermarks(conversation: ConversationRow, sentAt: Date): MessageStatus {
  if (conversation.readWatermark && conversation.readWatermark >= sentAt) return "read";
  if (conversation.deliveredWatermark && conversation.deliveredWatermark >= sentAt) return "delivered";
  return "sent";
}

function laterStatus(a: MessageStatus, b: MessageStatus): MessageStatus {
  return OUTGOING_RANK[b] > OUTGOING_RANK[a] ? b : a;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * An echo is a message the page sent. Ours (the send worker stored it `sending` with `id` = the Send API
 * `metadata`) is confirmed in place; anything else (the Page inbox, another app) is a new outgoing row.
 * Whichever of the send response and the echo comes first, the message has one row.
 */
async function storeEcho(context: Context, event: EchoEvent) {
  const { tx, conversation } = context;
  const sentAt = new Date(event.timestamp);
  // ONE lookup, by mid or by our metadata: the send worker may commit the mid between two lookups (its
  // own transaction, not under this lock), and neither would find the row.
  const candidates = await tx.message.findMany({
    where: {
      pageId: event.pageId,
      OR: [
        { mid: event.mid },
        ...(event.metadata && UUID.test(event.metadata)
          ? [{ id: event.metadata, direction: "outgoing" as const }]
          : []),
      ],
    },
  });
  const ours =
    candidates.find((row) => row.mid === event.mid) ??
    candidates.find((row) => row.id === event.metadata && row.mid === null);
  if (ours) {
    if (ours.direction !== "outgoing") return;
    const status = laterStatus(ours.status, statusByWatermarks(conversation, sentAt));
    if (ours.mid === event.mid && status === ours.status && ours.sentAt.getTime() === sentAt.getTime())
      return;
    await tx.message.update({
      where: { id: ours.id },
      // Meta's timestamp replaces our local send time (also when the send response recorded the mid
      // first): the conversation is ordered by Meta's clock. The echo settles a send attempt whose answer
      // was lost, so the send worker never calls Meta for it again.
      data: { mid: event.mid, sentAt, status, error: null, sendAttemptStartedAt: null },
    });
    if (ours.mid === null) {
      // The echo came first (or the send response never did): it is this send's confirmation.
      context.publish({
        type: "message.sent",
        messageId: ours.id,
        pageId: event.pageId,
        psid: event.psid,
        mid: event.mid,
        occurredAt: context.now().getTime(),
      });
    }
    if (status !== ours.status) publishStatusChange(context, ours.id, ours.status, status);
    return;
  }
  await insertMessage(context, {
    mid: event.mid,
    direction: "outgoing",
    kind: event.attachments.length > 0 ? "attachment" : "text",
    text: event.text,
    payload: { attachments: event.attachments, appId: event.appId, metadata: event.metadata, raw: event.raw },
    status: statusByWatermarks(conversation, sentAt),
    sentAt,
  });
}

function publishStatusChange(
  context: Context,
  messageId: string,
  previous: MessageStatus,
  status: MessageStatus,
) {
  context.publish({
    type: "message.status_changed",
    messageId,
    pageId: context.event.pageId,
    psid: context.event.psid,
    status,
    previousStatus: previous,
    occurredAt: context.now().getTime(),
  });
}

/**
 * Meta's delivery: every message sent before `watermark` was delivered (plus the listed mids). The
 * watermark stays on the conversation so a message stored later (its echo was slower) gets it too.
 */
async function storeDelivery(context: Context, event: DeliveryEvent) {
  const { tx, conversation } = context;
  const watermark = new Date(event.watermark);
  await tx.$executeRaw`
    UPDATE conversations SET delivered_watermark = GREATEST(delivered_watermark, ${watermark}::timestamptz),
      updated_at = now()
    WHERE id = ${conversation.id}::uuid`;
  const moved = await tx.$queryRaw<Array<{ id: string; previous: MessageStatus }>>`
    WITH target AS (
      SELECT id, status FROM messages
      WHERE direction = 'outgoing' AND status = 'sent'
        AND ((conversation_id = ${conversation.id}::uuid AND sent_at <= ${watermark}::timestamptz)
             OR (page_id = ${event.pageId} AND mid = ANY(${event.mids}::text[])))
      FOR UPDATE)
    UPDATE messages m SET status = 'delivered', updated_at = now() FROM target WHERE m.id = target.id
    RETURNING m.id, target.status AS previous`;
  for (const m of moved) publishStatusChange(context, m.id, m.previous, "delivered");
}

/** Meta's read: every message sent before `watermark` was read; kept on the conversation like delivery. */
async function storeRead(context: Context, event: ReadEvent) {
  const { tx, conversation } = context;
  const watermark = new Date(event.watermark);
  await tx.$executeRaw`
    UPDATE conversations SET read_watermark = GREATEST(read_watermark, ${watermark}::timestamptz),
      updated_at = now()
    WHERE id = ${conversation.id}::uuid`;
  const moved = await tx.$queryRaw<Array<{ id: string; previous: MessageStatus }>>`
    WITH target AS (
      SELECT id, status FROM messages
      WHERE conversation_id = ${conversation.id}::uuid AND direction = 'outgoing'
        AND status IN ('sent', 'delivered') AND sent_at <= ${watermark}::timestamptz
      FOR UPDATE)
    UPDATE messages m SET status = 'read', updated_at = now() FROM target WHERE m.id = target.id
    RETURNING m.id, target.status AS previous`;
  for (const m of moved) publishStatusChange(context, m.id, m.previous, "read");
}

/**
 * Keyed by the target mid, so a reaction may arrive before its message. The latest of react/unreact by
 * Meta's timestamp wins, whatever order they are processed in.
 */
async function storeReaction(context: Context, event: ReactionEvent) {
  if (!event.targetMid) {
    await storeConversationEvent(context, "reaction", event.raw);
    return;
  }
  await context.tx.$executeRaw`
    INSERT INTO message_reactions (id, page_id, psid, target_mid, reaction, emoji, reacted_at, removed, updated_at)
    VALUES (gen_random_uuid(), ${event.pageId}, ${event.psid}, ${event.targetMid}, ${event.reaction},
            ${event.emoji}, ${new Date(event.timestamp)}::timestamptz, ${event.action === "unreact"}, now())
    ON CONFLICT (page_id, target_mid, psid) DO UPDATE SET
      reaction = EXCLUDED.reaction, emoji = EXCLUDED.emoji, reacted_at = EXCLUDED.reacted_at,
      removed = EXCLUDED.removed, updated_at = now()
    WHERE message_reactions.reacted_at < EXCLUDED.reacted_at`;
}

/** Referrals, opt-ins and what we do not model: kept whole on the conversation, once per event. */
async function storeConversationEvent(context: Context, kind: string, payload: unknown) {
  const { tx, event, conversation } = context;
  await tx.conversationEvent.createMany({
    data: [
      {
        pageId: event.pageId,
        conversationId: conversation.id,
        eventId: event.eventId,
        kind,
        payload: (payload ?? {}) as Prisma.InputJsonValue,
        occurredAt: new Date(event.timestamp),
      },
    ],
    skipDuplicates: true,
  });
}

/** A conversation's messages in Meta's order (timestamp, then mid), whatever order they were stored in. */
export function conversationMessages(db: Db, pageId: string, psid: string) {
  return db.message.findMany({
    where: { pageId, conversation: { contact: { pageId, psid } } },
    orderBy: [{ sentAt: "asc" }, { mid: "asc" }],
  });
}
