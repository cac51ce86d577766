import {
  type ConversationView,
  type MessageView,
  type PageView,
  StoryReference,
} from "@switchboard/contracts";
import { type Db, type PageConnection, Prisma } from "@switchboard/db";
import { ConversationCursor, decodeCursor, encodeCursor, MessageCursor } from "./cursor";

/** The reads behind the Conversations API, each a keyset page over an index. */

export async function listCompanyPages(db: Db, companyId: string): Promise<PageView[]> {
  const pages = await db.pageConnection.findMany({
    where: { companyId },
    orderBy: [{ name: "asc" }, { pageId: "asc" }],
  });
  return pageViewsOf(db, pages);
}

/** One connected page or Instagram account as the API shows it, whatever its company. */
export async function findPageView(db: Db, pageId: string): Promise<PageView | undefined> {
  const page = await db.pageConnection.findUnique({ where: { pageId } });
  return page ? (await pageViewsOf(db, [page]))[0] : undefined;
}

async function pageViewsOf(db: Db, pages: PageConnection[]): Promise<PageView[]> {
  const subscriptions = await db.pageSubscription.findMany({
    where: { pageId: { in: pages.map((p) => p.pageId) } },
  });
  const byPage = new Map(subscriptions.map((s) => [s.pageId, s]));
  return pages.map((page) => {
    const subscription = byPage.get(page.pageId);
    return {
      pageId: page.pageId,
      name: page.name,
      platform: page.platform,
      status: page.status,
      statusReason: page.statusReason,
      tokenExpiresAt: page.tokenExpiresAt?.toISOString() ?? null,
      policy:
        page.policyAction && page.policyChangedAt
          ? {
              action: page.policyAction,
              reason: page.policyReason,
              changedAt: page.policyChangedAt.toISOString(),
            }
          : null,
      subscription: subscription
        ? {
            status: subscription.status,
            subscribedFields: subscription.subscribedFields,
            lastCheckedAt: subscription.lastCheckedAt?.toISOString() ?? null,
          }
        : null,
    };
  });
}

/** A conversation's person, platform and thread owner (its messages are `listMessages`). */
export type ConversationHeader = Omit<ConversationView, "lastMessage" | "lastMessageAt"> & { pageId: string };

export async function findConversation(
  db: Db,
  conversationId: string,
): Promise<ConversationHeader | undefined> {
  const row = await db.conversation.findUnique({ where: { id: conversationId }, include: { contact: true } });
  if (!row) return undefined;
  return {
    id: row.id,
    pageId: row.pageId,
    psid: row.contact.psid,
    platform: row.platform,
    contact: {
      firstName: row.contact.firstName,
      lastName: row.contact.lastName,
      profilePicUrl: row.contact.profilePicUrl,
      name: row.contact.name,
      username: row.contact.username,
    },
    threadOwner: row.threadOwnerChangedAt
      ? { appId: row.threadOwnerAppId, since: row.threadOwnerChangedAt.toISOString() }
      : null,
  };
}

export interface PageOf<T> {
  data: T[];
  nextCursor: string | null;
}

interface MessageRow {
  id: string;
  platform: MessageView["platform"];
  mid: string | null;
  direction: MessageView["direction"];
  kind: string;
  text: string | null;
  payload: Record<string, unknown> | null;
  status: MessageView["status"];
  error: string | null;
  edit_count: number;
  edited_at: Date | string | null;
  deleted_at: Date | string | null;
  received_on_standby: boolean;
  sent_by: MessageView["sentBy"];
  sent_at: Date;
  created_at: Date;
}

function toMessageView(row: MessageRow): MessageView {
  return {
    id: row.id,
    platform: row.platform,
    mid: row.mid,
    direction: row.direction,
    kind: row.kind,
    text: row.text,
    payload: row.payload ?? {},
    status: row.status,
    error: row.error,
    sentBy: row.sent_by,
    editCount: row.edit_count,
    editedAt: row.edited_at === null ? null : new Date(row.edited_at).toISOString(),
    deletedAt: row.deleted_at === null ? null : new Date(row.deleted_at).toISOString(),
    replyTo: replyToOf(row.payload),
    unsupported: row.payload?.unsupported === true,
    receivedOnStandby: row.received_on_standby,
    sentAt: row.sent_at.toISOString(),
    createdAt: row.created_at.toISOString(),
  };
}

/** What an incoming message answered, from the payload the store wrote (`replyToMid`, `replyToStory`). */
function replyToOf(payload: Record<string, unknown> | null): MessageView["replyTo"] {
  const mid = typeof payload?.replyToMid === "string" ? payload.replyToMid : null;
  const story = StoryReference.safeParse(payload?.replyToStory);
  const storyView = story.success ? story.data : null;
  return mid === null && storyView === null ? null : { mid, story: storyView };
}

export async function listConversations(
  db: Db,
  pageId: string,
  { limit, cursor }: { limit: number; cursor?: string },
): Promise<PageOf<ConversationView>> {
  const after = cursor ? decodeCursor(cursor, ConversationCursor) : undefined;
  const rows = await db.$queryRaw<
    Array<{
      id: string;
      psid: string;
      platform: ConversationView["platform"];
      first_name: string | null;
      last_name: string | null;
      profile_pic_url: string | null;
      name: string | null;
      username: string | null;
      thread_owner_app_id: string | null;
      thread_owner_changed_at: Date | null;
      last_message_at: Date | null;
      last_message:
        | (Omit<MessageRow, "sent_at" | "created_at"> & { sent_at: string; created_at: string })
        | null;
    }>
  >(conversationsQuery(pageId, limit + 1, after));
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return {
    data: page.map((row) => ({
      id: row.id,
      psid: row.psid,
      platform: row.platform,
      contact: {
        firstName: row.first_name,
        lastName: row.last_name,
        profilePicUrl: row.profile_pic_url,
        name: row.name,
        username: row.username,
      },
      threadOwner: row.thread_owner_changed_at
        ? { appId: row.thread_owner_app_id, since: row.thread_owner_changed_at.toISOString() }
        : null,
      lastMessageAt: row.last_message_at?.toISOString() ?? null,
      lastMessage: row.last_message
        ? toMessageView({
            ...row.last_message,
            sent_at: new Date(row.last_message.sent_at),
            created_at: new Date(row.last_message.created_at),
          })
        : null,
    })),
    nextCursor:
      rows.length > limit && last
        ? encodeCursor([last.last_message_at?.toISOString() ?? null, last.id])
        : null,
  };
}

export async function findConversationId(db: Db, pageId: string, psid: string): Promise<string | undefined> {
  const conversation = await db.conversation.findFirst({
    where: { pageId, contact: { pageId, psid } },
    select: { id: true },
  });
  return conversation?.id;
}

export async function listMessages(
  db: Db,
  conversationId: string,
  { limit, cursor, order }: { limit: number; cursor?: string; order: "asc" | "desc" },
): Promise<PageOf<MessageView>> {
  const after = cursor ? decodeCursor(cursor, MessageCursor) : undefined;
  const rows = await db.$queryRaw<MessageRow[]>(messagesQuery(conversationId, limit + 1, order, after));
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return {
    data: page.map(toMessageView),
    nextCursor:
      rows.length > limit && last
        ? encodeCursor([last.sent_at.toISOString(), last.mid ?? "", last.id])
        : null,
  };
}

/**
 * A page's conversations, newest first, `limit` rows after the keyset `after`. Ordered by exactly the
 * expressions of `conversations_page_listing_idx`: a screen reads its rows from the index, never sorts the
 * page's conversations (EXPLAIN in the README).
 */
export function conversationsQuery(
  pageId: string,
  limit: number,
  after?: [string | null, string],
): Prisma.Sql {
  // '-infinity' puts conversations without a message last and keeps the keyset a total order.
  const startAfter = after
    ? Prisma.sql`AND (COALESCE(c.last_message_at, '-infinity'::timestamptz), c.id) < (${after[0] ?? "-infinity"}::timestamptz, ${after[1]}::uuid)`
    : Prisma.empty;
  return Prisma.sql`
    SELECT c.id, ct.psid, c.platform::text AS platform, ct.first_name, ct.last_name, ct.profile_pic_url,
           ct.name, ct.username, c.thread_owner_app_id, c.thread_owner_changed_at, c.last_message_at,
           lm.row AS last_message
    FROM conversations c
    JOIN contacts ct ON ct.id = c.contact_id
    LEFT JOIN LATERAL (
      SELECT to_jsonb(m) AS row FROM (
        SELECT id, platform, mid, direction, kind, text, payload, status, error, sent_by, edit_count, edited_at,
               deleted_at, received_on_standby, sent_at, created_at
        FROM messages
        WHERE conversation_id = c.id
        ORDER BY sent_at DESC, COALESCE(mid, '') DESC, id DESC
        LIMIT 1
      ) m
    ) lm ON true
    WHERE c.page_id = ${pageId} ${startAfter}
    ORDER BY COALESCE(c.last_message_at, '-infinity'::timestamptz) DESC, c.id DESC
    LIMIT ${limit}`;
}

/**
 * A conversation's messages in Meta's order (or reversed), `limit` rows after the keyset `after`, by the
 * expressions of `messages_conversation_listing_idx`: no sort of the conversation's history.
 */
export function messagesQuery(
  conversationId: string,
  limit: number,
  order: "asc" | "desc",
  after?: [string, string, string],
): Prisma.Sql {
  const key = Prisma.sql`(sent_at, COALESCE(mid, ''), id)`;
  const startAfter = after
    ? Prisma.sql`AND ${key} ${order === "asc" ? Prisma.raw(">") : Prisma.raw("<")} (${after[0]}::timestamptz, ${after[1]}, ${after[2]}::uuid)`
    : Prisma.empty;
  const direction = Prisma.raw(order === "asc" ? "ASC" : "DESC");
  return Prisma.sql`
    SELECT id, platform::text AS platform, mid, direction::text AS direction, kind, text, payload,
           status::text AS status, error,
           sent_by, edit_count, edited_at, deleted_at, received_on_standby, sent_at, created_at
    FROM messages
    WHERE conversation_id = ${conversationId}::uuid ${startAfter}
    ORDER BY sent_at ${direction}, COALESCE(mid, '') ${direction}, id ${direction}
    LIMIT ${limit}`;
}
