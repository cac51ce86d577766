import { randomUUID } from "node:crypto";
import {
  type AccountLinkingEvent,
  type BusTopology,
  type DeliveryEvent,
  type DomainEvent,
  type EchoEvent,
  type EditEvent,
  echoSenderOf,
  type IncomingMessageEvent,
  laterOutgoingStatus,
  type MessageStatus,
  type MessagingEvent,
  MetaTimestamp,
  type OptinEvent,
  type OutgoingSender,
  type PageLifecycleEvent,
  type PageStatus,
  type PolicyEnforcementEvent,
  type PostbackEvent,
  type ReactionEvent,
  type ReadEvent,
  type ThreadControlEvent,
  threadOwnerOf,
  type UnsendEvent,
} from "@switchboard/contracts";
import type { TokenCipher } from "@switchboard/crypto";
import { type Db, type Message, Prisma } from "@switchboard/db";
import { z } from "zod";
import { type OutboxRow, outboxRow, pageLifecycleOutboxRow, writeOutbox } from "./domain-events";
import { sameSentText } from "./echo-text";

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

export interface StoreOptions {
  /** Checked just before commit: when the lock was lost, the transaction rolls back. */
  signal?: AbortSignal & { error?: Error };
  now?: () => Date;
  /** Our Meta app id (`FB_APP_ID`): an echo with it that matches no row of ours is still ours. */
  appId?: string;
  /** Encrypts the notification-message tokens people opt in with (TOKEN_ENCRYPTION_KEYS). */
  cipher?: TokenCipher;
}

/**
 * Applies a batch of messaging events (any pages, any conversations, the caller holds their locks) in ONE
 * transaction, and returns what each event changed, in the batch's order:
 *
 *   1. contacts and conversations of the whole batch: one statement (`upsertConversations`);
 *   2. incoming messages and postbacks, most of the traffic: one statement (`insertIncoming`);
 *   3. every other kind (echo, delivery, read, reaction, …) in arrival order, each with its own small
 *      statements;
 *   4. the domain events of the batch: one statement (outbox), complete as built here.
 *
 * Idempotent: applying the same events again changes nothing and produces no domain event, whatever order
 * events of a conversation arrive in. A batch commits whole or not at all.
 */
export async function storeMessagingEvents(
  db: Db,
  topology: BusTopology,
  events: readonly MessagingEvent[],
  options: StoreOptions = {},
): Promise<StoreResult[]> {
  const now = options.now ?? (() => new Date());
  if (events.length === 0) return [];
  return db.$transaction(
    async (tx) => {
      const results: StoreResult[] = events.map(() => ({ outbox: [], storedMessages: [] }));
      // Page-level events (Meta's policy enforcement) belong to no person and create no conversation.
      const conversations = await upsertConversations(tx, events.filter(isConversationEvent));
      const conversationOf = (event: MessagingEvent) => {
        const conversation = conversations.get(conversationKey(event));
        if (!conversation) throw new Error("INVARIANT: conversation upsert returned no row for an event");
        return conversation;
      };
      const announced = new Set<string>();
      events.forEach((event, i) => {
        if (!isConversationEvent(event)) return;
        const conversation = conversationOf(event);
        if (!conversation.inserted || announced.has(conversation.id)) return;
        announced.add(conversation.id);
        results[i]!.outbox.push(
          outboxRow(topology, {
            type: "conversation.created",
            conversationId: conversation.id,
            pageId: event.pageId,
            platform: event.platform,
            psid: event.psid,
            occurredAt: now().getTime(),
          }),
        );
      });
      await insertIncoming(tx, topology, events, conversationOf, results, now);
      for (const [i, event] of events.entries()) {
        if (event.kind === "message" || event.kind === "postback") continue;
        const result = results[i]!;
        if (event.kind === "policy_enforcement") {
          await storePolicyEnforcement(tx, topology, event, result, now);
          continue;
        }
        const context: Context = {
          tx,
          event,
          conversation: conversationOf(event),
          publish: (e) => result.outbox.push(outboxRow(topology, e)),
          result,
          now,
          appId: options.appId,
          cipher: options.cipher,
        };
        await storeOtherKind(context, event);
      }
      await writeOutbox(
        tx,
        results.flatMap((r) => r.outbox),
      );
      if (options.signal?.aborted) throw options.signal.error ?? new Error("conversation lock lost");
      return results;
    },
    // A busy pool makes a transaction wait; waiting beats failing and redelivering.
    { maxWait: 10_000, timeout: 20_000 },
  );
}

/** One event alone: `storeMessagingEvents` with a batch of one. */
export async function storeMessagingEvent(
  db: Db,
  topology: BusTopology,
  event: MessagingEvent,
  options: StoreOptions = {},
): Promise<StoreResult> {
  const [result] = await storeMessagingEvents(db, topology, [event], options);
  if (!result) throw new Error("INVARIANT: a batch of one returned no result");
  return result;
}

const isConversationEvent = (event: MessagingEvent) => event.kind !== "policy_enforcement";

/**
 * Meta blocked, unblocked or warned the page. Recorded once per event; block and unblock move the page's
 * status in Meta's order (a late block after its unblock changes nothing), and the change is announced as
 * `page.status_changed` through the outbox, in this transaction: caches, the console and the product hear
 * it even if the process dies right after. A blocked page is still routed and subscribed; sends stop.
 */
async function storePolicyEnforcement(
  tx: Tx,
  topology: BusTopology,
  event: PolicyEnforcementEvent,
  result: StoreResult,
  now: () => Date,
) {
  const at = new Date(event.timestamp);
  const recorded = await tx.pagePolicyEvent.createMany({
    data: [
      {
        pageId: event.pageId,
        eventId: event.eventId,
        action: event.action,
        reason: event.reason,
        occurredAt: at,
      },
    ],
    skipDuplicates: true,
  });
  if (recorded.count === 0) return;
  const reason = event.reason ?? "no reason given";
  const statusReason =
    event.action === "block" ? `blocked by Meta: ${reason}` : event.action === "unblock" ? null : undefined;
  // Only a change newer than the last one applies; a warning never changes the status.
  // Locked first: the status before and after this event, whatever else changes the row meanwhile.
  const [before] = await tx.$queryRaw<Array<{ status: PageStatus }>>`
    SELECT status::text AS status FROM page_connections WHERE page_id = ${event.pageId} FOR UPDATE`;
  if (!before) return;
  const [page] = await tx.$queryRaw<Array<{ company_id: string; status: PageStatus }>>`
    UPDATE page_connections SET
      status = CASE
        WHEN ${event.action}::text = 'block' AND status IN ('active', 'blocked') THEN 'blocked'::page_status
        WHEN ${event.action}::text = 'unblock' AND status = 'blocked' THEN 'active'::page_status
        ELSE status END,
      status_reason = CASE
        WHEN ${event.action}::text = 'block' AND status IN ('active', 'blocked') THEN ${statusReason ?? null}::text
        WHEN ${event.action}::text = 'unblock' AND status = 'blocked' THEN NULL
        ELSE status_reason END,
      policy_action = ${event.action}::text,
      policy_reason = ${event.reason}::text,
      policy_changed_at = ${at}::timestamptz,
      updated_at = now()
    WHERE page_id = ${event.pageId} AND (policy_changed_at IS NULL OR policy_changed_at < ${at}::timestamptz)
    RETURNING company_id, status::text AS status`;
  if (!page || page.status === before.status) return;
  const lifecycle: PageLifecycleEvent = {
    type: "page.status_changed",
    pageId: event.pageId,
    companyId: page.company_id,
    platform: event.platform,
    status: page.status,
    reason: page.status === "blocked" ? `blocked by Meta: ${reason}` : "unblocked by Meta",
    occurredAt: now().getTime(),
  };
  result.outbox.push(
    pageLifecycleOutboxRow(
      topology,
      lifecycle,
      `page.status_changed:${event.pageId}:policy:${event.timestamp}`,
    ),
  );
}

async function storeOtherKind(
  context: Context,
  event: Exclude<MessagingEvent, { kind: "message" | "postback" | "policy_enforcement" }>,
) {
  switch (event.kind) {
    case "echo":
      return storeEcho(context, event);
    case "delivery":
      return storeDelivery(context, event);
    case "read":
      return storeRead(context, event);
    case "reaction":
      return storeReaction(context, event);
    case "edit":
      return storeEdit(context, event);
    case "unsend":
      return storeUnsend(context, event);
    case "thread_control":
      return storeThreadControl(context, event);
    case "account_linking":
      return storeAccountLinking(context, event);
    case "optin":
      return storeOptin(context, event);
    case "referral":
    case "unsupported":
      return storeConversationEvent(
        context,
        event.kind,
        event.kind === "unsupported" ? { reason: event.reason, raw: event.raw } : event.raw,
      );
  }
}

interface Context {
  tx: Tx;
  event: MessagingEvent;
  conversation: ConversationRow;
  publish: (e: DomainEvent) => void;
  result: StoreResult;
  now: () => Date;
  appId: string | undefined;
  cipher: TokenCipher | undefined;
}

const conversationKey = (event: { pageId: string; psid: string }) => `${event.pageId}\u0000${event.psid}`;

/** The time a message-bearing event moves the conversation's `last_message_at` to; null for the others. */
function lastMessageAtOf(event: MessagingEvent): number | null {
  return event.kind === "message" || event.kind === "postback" || event.kind === "echo"
    ? event.timestamp
    : null;
}

/**
 * The contacts and conversations of a batch, created or refreshed in one statement: per (page, psid) the
 * latest profile a message carries and the latest message time. Returned by `conversationKey`.
 */
async function upsertConversations(
  tx: Tx,
  events: readonly MessagingEvent[],
): Promise<Map<string, ConversationRow>> {
  const inputs = new Map<
    string,
    {
      page_id: string;
      psid: string;
      platform: string;
      first_name: string | null;
      last_name: string | null;
      profile_pic_url: string | null;
      name: string | null;
      username: string | null;
      profile_fetched_at: string | null;
      last_message_at: string | null;
    }
  >();
  for (const event of events) {
    const key = conversationKey(event);
    const input = inputs.get(key) ?? {
      page_id: event.pageId,
      psid: event.psid,
      platform: event.platform,
      first_name: null,
      last_name: null,
      profile_pic_url: null,
      name: null,
      username: null,
      profile_fetched_at: null,
      last_message_at: null,
    };
    inputs.set(key, input);
    const profile = event.kind === "message" ? event.profile : null;
    if (profile) {
      input.first_name = profile.firstName ?? input.first_name;
      input.last_name = profile.lastName ?? input.last_name;
      input.profile_pic_url = profile.profilePicUrl ?? input.profile_pic_url;
      input.name = profile.name ?? input.name;
      input.username = profile.username ?? input.username;
      // A profile from the router's cache is not news: only a fresh fetch moves `profile_fetched_at`.
      if (event.kind === "message" && event.profileStatus === "fetched") {
        input.profile_fetched_at = new Date().toISOString();
      }
    }
    const at = lastMessageAtOf(event);
    if (at !== null && (input.last_message_at === null || at > Date.parse(input.last_message_at))) {
      input.last_message_at = new Date(at).toISOString();
    }
  }
  // Sorted: concurrent batches touch shared rows in one order (no deadlock between them).
  const rows = [...inputs.values()].sort((a, b) =>
    a.page_id === b.page_id ? (a.psid < b.psid ? -1 : 1) : a.page_id < b.page_id ? -1 : 1,
  );
  const returned = await tx.$queryRaw<Array<ConversationRow & { pageId: string; psid: string }>>`
    WITH input AS (
      SELECT * FROM jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) AS x(
        page_id text, psid text, platform platform, first_name text, last_name text, profile_pic_url text,
        name text, username text, profile_fetched_at timestamptz, last_message_at timestamptz)
    ), contact AS (
      INSERT INTO contacts (id, page_id, psid, first_name, last_name, profile_pic_url, name, username,
                            profile_fetched_at, updated_at)
      SELECT gen_random_uuid(), page_id, psid, first_name, last_name, profile_pic_url, name, username,
             profile_fetched_at, now()
      FROM input ORDER BY page_id, psid
      ON CONFLICT (page_id, psid) DO UPDATE SET
        first_name = COALESCE(EXCLUDED.first_name, contacts.first_name),
        last_name = COALESCE(EXCLUDED.last_name, contacts.last_name),
        profile_pic_url = COALESCE(EXCLUDED.profile_pic_url, contacts.profile_pic_url),
        name = COALESCE(EXCLUDED.name, contacts.name),
        username = COALESCE(EXCLUDED.username, contacts.username),
        profile_fetched_at = COALESCE(EXCLUDED.profile_fetched_at, contacts.profile_fetched_at),
        updated_at = CASE WHEN EXCLUDED.first_name IS NULL AND EXCLUDED.last_name IS NULL
          AND EXCLUDED.profile_pic_url IS NULL AND EXCLUDED.name IS NULL AND EXCLUDED.username IS NULL
          THEN contacts.updated_at ELSE now() END
      RETURNING id, page_id, psid
    ), conversation AS (
      INSERT INTO conversations (id, page_id, contact_id, platform, last_message_at, updated_at)
      SELECT gen_random_uuid(), contact.page_id, contact.id, input.platform, input.last_message_at, now()
      FROM contact JOIN input ON input.page_id = contact.page_id AND input.psid = contact.psid
      ORDER BY contact.page_id, contact.psid
      ON CONFLICT (page_id, contact_id) DO UPDATE SET
        last_message_at = GREATEST(conversations.last_message_at, EXCLUDED.last_message_at),
        updated_at = now()
      RETURNING id, page_id, contact_id, (xmax = 0) AS inserted, delivered_watermark, read_watermark
    )
    SELECT conversation.id, conversation.page_id AS "pageId", contact.psid, conversation.inserted,
           conversation.delivered_watermark AS "deliveredWatermark", conversation.read_watermark AS "readWatermark"
    FROM conversation JOIN contact ON contact.id = conversation.contact_id`;
  const byKey = new Map<string, ConversationRow>();
  for (const row of returned) {
    byKey.set(conversationKey(row), {
      id: row.id,
      inserted: row.inserted,
      deliveredWatermark: row.deliveredWatermark,
      readWatermark: row.readWatermark,
    });
  }
  return byKey;
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
      replyToStory: event.replyToStory,
      unsupported: event.unsupported,
      referral: event.referral,
      raw: event.raw,
    },
    sentAt: new Date(event.timestamp),
  };
}

/**
 * The batch's incoming messages and postbacks in one multi-row INSERT; (page, mid) already stored (a
 * redelivery, or the same item twice in the batch) inserts nothing and announces nothing.
 */
async function insertIncoming(
  tx: Tx,
  topology: BusTopology,
  events: readonly MessagingEvent[],
  conversationOf: (event: MessagingEvent) => ConversationRow,
  results: StoreResult[],
  now: () => Date,
) {
  const items = events.flatMap((event, i) =>
    event.kind === "message" || event.kind === "postback"
      ? [{ i, event, row: incomingRow(event), id: randomUUID(), conversationId: conversationOf(event).id }]
      : [],
  );
  if (items.length === 0) return;
  const rows = items
    .map(({ event, row, id, conversationId }) => ({
      id,
      page_id: event.pageId,
      platform: event.platform,
      conversation_id: conversationId,
      received_on_standby: event.standby,
      mid: row.mid,
      kind: row.kind,
      text: row.text,
      payload: row.payload,
      sent_at: row.sentAt.toISOString(),
    }))
    .sort((a, b) => (a.page_id === b.page_id ? (a.mid < b.mid ? -1 : 1) : a.page_id < b.page_id ? -1 : 1));
  // The insert also says which new messages have an edit or an unsend waiting for them (they came
  // first): only those take the extra statements, so a batch with none runs this one alone.
  const inserted = await tx.$queryRaw<Array<{ id: string; edit_waiting: boolean; unsend_waiting: boolean }>>`
    WITH stored AS (
      INSERT INTO messages (id, page_id, platform, conversation_id, received_on_standby, mid, direction, kind,
                            text, payload, status, sent_at, updated_at)
      SELECT id, page_id, platform, conversation_id, received_on_standby, mid, 'incoming'::message_direction,
             kind, text, payload, 'received'::message_status, sent_at, now()
      FROM jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) AS x(
        id uuid, page_id text, platform platform, conversation_id uuid, received_on_standby boolean, mid text,
        kind text, text text, payload jsonb, sent_at timestamptz)
      ON CONFLICT DO NOTHING
      RETURNING id, page_id, mid)
    SELECT s.id::text,
           EXISTS (SELECT 1 FROM message_edits e WHERE e.page_id = s.page_id AND e.mid = s.mid) AS edit_waiting,
           EXISTS (SELECT 1 FROM message_unsends u WHERE u.page_id = s.page_id AND u.mid = s.mid) AS unsend_waiting
    FROM stored s`;
  const stored = new Set(inserted.map((r) => r.id));
  const awaitingEdit = inserted.filter((r) => r.edit_waiting).map((r) => r.id);
  const awaitingUnsend = inserted.filter((r) => r.unsend_waiting).map((r) => r.id);
  const edited =
    awaitingEdit.length > 0 ? await applyWaitingEdits(tx, awaitingEdit) : new Map<string, AppliedEdit>();
  // After the edits: an unsent message keeps no text, whatever revision it had.
  const unsent =
    awaitingUnsend.length > 0 ? await applyWaitingUnsends(tx, awaitingUnsend) : new Map<string, Date>();
  const occurredAt = now().getTime();
  for (const { i, event, row, id, conversationId } of items) {
    if (!stored.has(id)) continue;
    const result = results[i]!;
    result.storedMessages.push({ messageId: id, direction: "incoming", sentAt: row.sentAt });
    result.outbox.push(
      outboxRow(topology, {
        type: "message.created",
        messageId: id,
        conversationId,
        pageId: event.pageId,
        platform: event.platform,
        psid: event.psid,
        mid: row.mid,
        direction: "incoming",
        kind: row.kind,
        sentAt: row.sentAt.getTime(),
        occurredAt,
      }),
    );
    const edit = edited.get(id);
    if (edit && !unsent.has(id)) {
      result.outbox.push(
        outboxRow(topology, {
          type: "message.edited",
          messageId: id,
          conversationId,
          pageId: event.pageId,
          platform: event.platform,
          psid: event.psid,
          mid: row.mid,
          editCount: edit.editCount,
          editedAt: edit.editedAt.getTime(),
          occurredAt,
        }),
      );
    }
    const deletedAt = unsent.get(id);
    if (deletedAt) {
      result.outbox.push(
        outboxRow(topology, {
          type: "message.deleted",
          messageId: id,
          conversationId,
          pageId: event.pageId,
          platform: event.platform,
          psid: event.psid,
          mid: row.mid,
          deletedAt: deletedAt.getTime(),
          occurredAt,
        }),
      );
    }
  }
}

/**
 * What an unsent message keeps: its place (conversation, sent_at, mid, kind) and its attachments' types;
 * its text, attachment URLs, raw item and every edit's text are cleared.
 */
const UNSENT_PAYLOAD = Prisma.sql`jsonb_build_object(
  'unsent', true,
  'attachments', COALESCE((SELECT jsonb_agg(jsonb_build_object('type', a->>'type'))
                           FROM jsonb_array_elements(CASE jsonb_typeof(payload->'attachments')
                             WHEN 'array' THEN payload->'attachments' ELSE '[]'::jsonb END) a), '[]'::jsonb))`;

/** Unsends that came before their message: the newly stored messages are cleared at once. */
async function applyWaitingUnsends(tx: Tx, messageIds: string[]): Promise<Map<string, Date>> {
  const rows = await tx.$queryRaw<Array<{ id: string; deleted_at: Date }>>`
    UPDATE messages m SET text = NULL, payload = ${UNSENT_PAYLOAD}, deleted_at = u.deleted_at, updated_at = now()
    FROM message_unsends u
    WHERE u.page_id = m.page_id AND u.mid = m.mid AND m.id = ANY(${messageIds}::uuid[])
      AND m.deleted_at IS NULL
    RETURNING m.id::text, m.deleted_at`;
  if (rows.length > 0) {
    await tx.$executeRaw`
      UPDATE message_edits e SET text = NULL FROM messages m
      WHERE m.id = ANY(${rows.map((r) => r.id)}::uuid[]) AND e.page_id = m.page_id AND e.mid = m.mid`;
  }
  return new Map(rows.map((r) => [r.id, r.deleted_at]));
}

/**
 * Instagram `is_deleted`: the message keeps its place and loses its content, once; an unsend before its
 * message waits in `message_unsends` (`applyWaitingUnsends`).
 */
async function storeUnsend(context: Context, event: UnsendEvent) {
  const { tx } = context;
  const deletedAt = new Date(event.timestamp);
  await tx.$executeRaw`
    INSERT INTO message_unsends (id, page_id, mid, deleted_at)
    VALUES (gen_random_uuid(), ${event.pageId}, ${event.mid}, ${deletedAt})
    ON CONFLICT (page_id, mid) DO NOTHING`;
  const [updated] = await tx.$queryRaw<Array<{ id: string; conversation_id: string }>>`
    UPDATE messages SET text = NULL, payload = ${UNSENT_PAYLOAD}, deleted_at = ${deletedAt}, updated_at = now()
    WHERE page_id = ${event.pageId} AND mid = ${event.mid} AND deleted_at IS NULL
    RETURNING id::text, conversation_id::text`;
  await tx.$executeRaw`
    UPDATE message_edits SET text = NULL WHERE page_id = ${event.pageId} AND mid = ${event.mid}`;
  if (!updated) return;
  context.publish({
    type: "message.deleted",
    messageId: updated.id,
    conversationId: updated.conversation_id,
    pageId: event.pageId,
    platform: event.platform,
    psid: event.psid,
    mid: event.mid,
    deletedAt: deletedAt.getTime(),
    occurredAt: context.now().getTime(),
  });
}

interface AppliedEdit {
  editCount: number;
  editedAt: Date;
}

/**
 * Edits that came before their message (they are kept in `message_edits`): the newly stored messages take
 * their latest revision at once. One statement for the batch.
 */
async function applyWaitingEdits(tx: Tx, messageIds: string[]): Promise<Map<string, AppliedEdit>> {
  const rows = await tx.$queryRaw<Array<{ id: string; edit_count: number; edited_at: Date }>>`
    UPDATE messages m
    SET text = e.text, edit_count = e.num_edit, edited_at = e.edited_at, updated_at = now()
    FROM (
      SELECT DISTINCT ON (x.page_id, x.mid) x.page_id, x.mid, x.num_edit, x.text, x.edited_at
      FROM message_edits x
      JOIN messages n ON n.page_id = x.page_id AND n.mid = x.mid
      WHERE n.id = ANY(${messageIds}::uuid[])
      ORDER BY x.page_id, x.mid, x.num_edit DESC
    ) e
    WHERE m.page_id = e.page_id AND m.mid = e.mid AND m.id = ANY(${messageIds}::uuid[])
      AND m.edit_count < e.num_edit
    RETURNING m.id::text, m.edit_count, m.edited_at`;
  return new Map(rows.map((r) => [r.id, { editCount: r.edit_count, editedAt: r.edited_at }]));
}

/**
 * `message_edits`: every revision is kept (once per num_edit); the message takes a revision's text only
 * when its num_edit is higher than the message's count, so a late or repeated lower edit changes nothing.
 * An edit before its message waits in `message_edits` (`applyWaitingEdits`).
 */
async function storeEdit(context: Context, event: EditEvent) {
  const { tx } = context;
  const editedAt = new Date(event.timestamp);
  await tx.$executeRaw`
    INSERT INTO message_edits (id, page_id, mid, num_edit, text, edited_at)
    SELECT gen_random_uuid(), ${event.pageId}, ${event.mid}, ${event.numEdit},
           -- an edit of a message already unsent keeps no text either
           CASE WHEN EXISTS (SELECT 1 FROM message_unsends
                             WHERE page_id = ${event.pageId} AND mid = ${event.mid}) THEN NULL
                ELSE ${event.text} END,
           ${editedAt}
    ON CONFLICT (page_id, mid, num_edit) DO NOTHING`;
  const [updated] = await tx.$queryRaw<Array<{ id: string; conversation_id: string }>>`
    UPDATE messages SET text = ${event.text}, edit_count = ${event.numEdit}, edited_at = ${editedAt},
                        updated_at = now()
    WHERE page_id = ${event.pageId} AND mid = ${event.mid} AND direction = 'incoming'
      AND edit_count < ${event.numEdit} AND deleted_at IS NULL
    RETURNING id::text, conversation_id::text`;
  if (!updated) return;
  context.publish({
    type: "message.edited",
    messageId: updated.id,
    conversationId: updated.conversation_id,
    pageId: event.pageId,
    platform: event.platform,
    psid: event.psid,
    mid: event.mid,
    editCount: event.numEdit,
    editedAt: editedAt.getTime(),
    occurredAt: context.now().getTime(),
  });
}

/** Inserts an outgoing message unless (page, mid) exists; true when this call stored it. */
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
    sentBy: OutgoingSender;
  },
): Promise<boolean> {
  const { tx, event, conversation } = context;
  const id = randomUUID();
  const { count } = await tx.message.createMany({
    data: [
      {
        id,
        pageId: event.pageId,
        platform: event.platform,
        conversationId: conversation.id,
        mid: row.mid,
        direction: row.direction,
        kind: row.kind,
        text: row.text,
        payload: row.payload as Prisma.InputJsonValue,
        status: row.status,
        sentAt: row.sentAt,
        sentBy: row.sentBy,
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
    platform: event.platform,
    psid: event.psid,
    mid: row.mid,
    direction: row.direction,
    kind: row.kind,
    sentAt: row.sentAt.getTime(),
    occurredAt: context.now().getTime(),
  });
  return true;
}

/** The status an outgoing message sent at `sentAt` has given the conversation's watermarks. */
function statusByWatermarks(conversation: ConversationRow, sentAt: Date): MessageStatus {
  if (conversation.readWatermark && conversation.readWatermark >= sentAt) return "read";
  if (conversation.deliveredWatermark && conversation.deliveredWatermark >= sentAt) return "delivered";
  return "sent";
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
  // ONE lookup, by mid, by our metadata or (Instagram, no metadata) as the conversation's send in flight:
  // the send worker may commit the mid between two lookups (its own transaction, not under this lock),
  // and neither would find the row.
  const candidates = await tx.message.findMany({
    where: {
      pageId: event.pageId,
      OR: [
        { mid: event.mid },
        ...(event.metadata && UUID.test(event.metadata)
          ? [{ id: event.metadata, direction: "outgoing" as const }]
          : []),
        ...(event.platform === "instagram" ? [inFlightSendOf(conversation.id)] : []),
      ],
    },
    orderBy: { queueSeq: "asc" },
  });
  const ours =
    candidates.find((row) => row.mid === event.mid) ??
    candidates.find((row) => row.id === event.metadata && row.mid === null) ??
    (event.platform === "instagram" ? inFlightSendEchoed(candidates, conversation.id, event) : undefined);
  if (ours) {
    if (ours.direction !== "outgoing") return;
    const status = laterOutgoingStatus(ours.status, statusByWatermarks(conversation, sentAt));
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
        platform: event.platform,
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
    // Templates and fallbacks (`url: null`, `payload: null`) are kept as Meta sent them, in `raw`.
    payload: { attachments: event.attachments, appId: event.appId, metadata: event.metadata, raw: event.raw },
    status: statusByWatermarks(conversation, sentAt),
    sentAt,
    sentBy: echoSenderOf(event.appId, context.appId),
  });
}

/** The conversation's send whose Send API call is under way (the worker set its attempt, no mid yet). */
function inFlightSendOf(conversationId: string) {
  return {
    conversationId,
    direction: "outgoing" as const,
    status: "sending" as const,
    mid: null,
    sendAttemptStartedAt: { not: null },
  };
}

/**
 * Instagram echoes carry no metadata: an echo whose mid we do not know yet is our send when it is the
 * conversation's send whose Send API call is under way (at most one: attempts are serialised per
 * conversation) and says the same thing. Meta answered, the worker has not recorded the mid yet.
 */
function inFlightSendEchoed(candidates: Message[], conversationId: string, event: EchoEvent) {
  const inFlight = candidates.find(
    (row) =>
      row.conversationId === conversationId &&
      row.direction === "outgoing" &&
      row.status === "sending" &&
      row.mid === null &&
      row.sendAttemptStartedAt !== null,
  );
  if (!inFlight) return undefined;
  if (inFlight.text !== null) return sameSentText(inFlight.text, event.text) ? inFlight : undefined;
  const request = (inFlight.payload as { request?: { attachment?: { type?: string } } }).request;
  const type = request?.attachment?.type;
  return event.text === null && type !== undefined && event.attachments.some((a) => a.type === type)
    ? inFlight
    : undefined;
}

/**
 * Conversation routing: every pass, take and request is kept as a conversation event; pass and take hand
 * the thread to `newOwnerAppId`, applied in Meta's order (a change older than the last one applied is
 * only kept), and announced as `conversation.thread_owner_changed`.
 */
async function storeThreadControl(context: Context, event: ThreadControlEvent) {
  await storeConversationEvent(context, "thread_control", event.raw);
  if (event.action === "request") return;
  const at = new Date(event.timestamp);
  const { count } = await context.tx.conversation.updateMany({
    where: {
      id: context.conversation.id,
      OR: [{ threadOwnerChangedAt: null }, { threadOwnerChangedAt: { lt: at } }],
    },
    data: { threadOwnerAppId: event.newOwnerAppId, threadOwnerChangedAt: at },
  });
  if (count === 0) return;
  context.publish({
    type: "conversation.thread_owner_changed",
    conversationId: context.conversation.id,
    pageId: event.pageId,
    platform: event.platform,
    psid: event.psid,
    ownerAppId: event.newOwnerAppId,
    owner: threadOwnerOf(event.newOwnerAppId, context.appId),
    previousOwnerAppId: event.previousOwnerAppId,
    changedAt: event.timestamp,
    occurredAt: context.now().getTime(),
  });
}

/** Linked or unlinked, the latest by Meta's time; the authorization code is kept only while linked. */
async function storeAccountLinking(context: Context, event: AccountLinkingEvent) {
  await storeConversationEvent(context, "account_linking", { status: event.status });
  const at = new Date(event.timestamp);
  await context.tx.contact.updateMany({
    where: {
      pageId: event.pageId,
      psid: event.psid,
      OR: [{ accountLinkChangedAt: null }, { accountLinkChangedAt: { lt: at } }],
    },
    data: {
      accountLinkStatus: event.status,
      accountLinkCode: event.status === "linked" ? event.authorizationCode : null,
      accountLinkChangedAt: at,
    },
  });
}

const NotificationOptin = z.looseObject({
  type: z.literal("notification_messages"),
  payload: z.string().optional(),
  title: z.string().optional(),
  notification_messages_token: z.string().optional(),
  notification_messages_frequency: z.string().optional(),
  notification_messages_timezone: z.string().optional(),
  token_expiry_timestamp: MetaTimestamp.optional(),
  user_token_status: z.string().optional(),
  notification_messages_status: z.string().optional(),
});

/**
 * Opt-ins are kept as conversation events; a marketing-messages opt-in (`notification_messages`) also
 * keeps its token per topic, encrypted, and its status (STOP_NOTIFICATIONS / RESUME_NOTIFICATIONS), the
 * latest by Meta's time. The token is never kept in the clear, not even in the event's raw copy.
 */
async function storeOptin(context: Context, event: OptinEvent) {
  const parsed = NotificationOptin.safeParse(event.optin);
  if (!parsed.success) return storeConversationEvent(context, "optin", event.raw);
  const optin = parsed.data;
  const token = optin.notification_messages_token;
  await storeConversationEvent(context, "optin", redactNotificationToken(event.raw));
  const topic = optin.payload ?? optin.title ?? "";
  const at = new Date(event.timestamp);
  const tokenEnc =
    token && context.cipher
      ? context.cipher.encrypt(token, {
          context: `notification-token:${event.pageId}:${event.psid}:${topic}`,
        })
      : null;
  const row = {
    ...(tokenEnc ? { tokenEnc } : {}),
    frequency: optin.notification_messages_frequency ?? null,
    timezone: optin.notification_messages_timezone ?? null,
    expiresAt: optin.token_expiry_timestamp ? new Date(optin.token_expiry_timestamp) : null,
    userTokenStatus: optin.user_token_status ?? null,
    status: optin.notification_messages_status ?? "RESUME_NOTIFICATIONS",
    title: optin.title ?? null,
    payload: optin.payload ?? null,
    changedAt: at,
  };
  await context.tx.contactNotificationToken.createMany({
    data: [{ pageId: event.pageId, psid: event.psid, topic, ...row }],
    skipDuplicates: true,
  });
  // An existing topic: only a newer opt-in (or stop/resume) changes it.
  await context.tx.contactNotificationToken.updateMany({
    where: { pageId: event.pageId, psid: event.psid, topic, changedAt: { lt: at } },
    data: row,
  });
}

function redactNotificationToken(raw: unknown): unknown {
  const item = raw as { optin?: Record<string, unknown> } | null;
  if (!item?.optin || typeof item.optin.notification_messages_token !== "string") return raw;
  return { ...item, optin: { ...item.optin, notification_messages_token: "[encrypted]" } };
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
    platform: context.event.platform,
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
  // Later events of the same batch (an echo) compare against it.
  if (!conversation.deliveredWatermark || conversation.deliveredWatermark < watermark) {
    conversation.deliveredWatermark = watermark;
  }
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
  if (!conversation.readWatermark || conversation.readWatermark < watermark)
    conversation.readWatermark = watermark;
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
        platform: event.platform,
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
