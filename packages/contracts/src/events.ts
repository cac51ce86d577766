import { z } from "zod";
import { Platform } from "./webhook";

/**
 * A conversation is (page, PSID), or (Instagram account, IGSID). Chatwoot's lock keys, used for every
 * event of the conversation and for its sends.
 */
export function conversationLockKey(psid: string, pageId: string, platform: Platform = "messenger"): string {
  return `${platform === "instagram" ? "IG" : "FB"}_MESSAGE_CREATE_LOCK::${psid}::${pageId}`;
}

export function conversationKey(pageId: string, psid: string): string {
  return `${pageId}:${psid}`;
}

/**
 * `psid` of a person Meta names only by a `user_ref` (a checkbox-plugin opt-in, a chat-plugin guest):
 * `user_ref:<ref>`, so it never collides with a real PSID. No profile can be fetched for it.
 */
export const USER_REF_PSID_PREFIX = "user_ref:";
/** `psid` of an item that names no person at all (e.g. `policy-enforcement`): it is kept under the page. */
export const NO_PERSON_PSID = "unknown";

export const ContactProfile = z.object({
  firstName: z.string().nullable(),
  lastName: z.string().nullable(),
  profilePicUrl: z.string().nullable(),
  /** Instagram profiles have a display name and an @username instead of first and last names. */
  name: z.string().nullable().default(null),
  username: z.string().nullable().default(null),
});
export type ContactProfile = z.infer<typeof ContactProfile>;

/** Whether the router could attach a profile: `unavailable` means retry later, the message went on. */
export const ProfileStatus = z.enum(["fetched", "cached", "unavailable", "not_requested"]);

export const Attachment = z.object({
  type: z.string(),
  url: z.string().nullable(),
  stickerId: z.string().nullable(),
  title: z.string().nullable(),
  payload: z.unknown(),
});
export type Attachment = z.infer<typeof Attachment>;

const EventBase = z.object({
  /** Stable id: the same Meta item always yields the same id (also the bus `Nats-Msg-Id`). */
  eventId: z.string(),
  pageId: z.string(),
  companyId: z.string(),
  /** The connection's platform; absent on events published before Instagram existed. */
  platform: Platform.default("messenger"),
  /** Delivered in `standby[]`: another app (e.g. the Page inbox) controlled the thread. */
  standby: z.boolean().default(false),
  /** The user's page-scoped id, whichever side sent the item (or `USER_REF_PSID_PREFIX` + ref, or `NO_PERSON_PSID`). */
  psid: z.string(),
  conversationKey: z.string(),
  /** Meta's timestamp in ms (the entry's time when the item has none). */
  timestamp: z.number().int(),
  traceId: z.string(),
  receivedAt: z.number().int(),
  /** The item exactly as Meta sent it. */
  raw: z.unknown(),
});

/** An Instagram story a message answers: its id, and its CDN URL while the story lives. */
export const StoryReference = z.object({ id: z.string().nullable(), url: z.string().nullable() });

export const IncomingMessageEvent = EventBase.extend({
  kind: z.literal("message"),
  mid: z.string(),
  text: z.string().nullable(),
  attachments: z.array(Attachment),
  quickReplyPayload: z.string().nullable(),
  replyToMid: z.string().nullable(),
  /** Instagram: the customer answered the account's story (its id, and its CDN URL while it lives). */
  replyToStory: StoryReference.nullable().default(null),
  /** Instagram `is_unsupported`: a message kind the API does not deliver; kept, flagged, without content. */
  unsupported: z.boolean().default(false),
  /** The ad or link the person came from (`message.referral`), as Meta sent it. */
  referral: z.unknown().nullable().default(null),
  profile: ContactProfile.nullable(),
  profileStatus: ProfileStatus,
});

/** Meta's inbox apps: an echo with one of these `app_id`s was written by a person in Meta's inbox. */
export const PAGE_INBOX_APP_ID = "263902037430900";
export const INSTAGRAM_INBOX_APP_ID = "1217981644879628";

/** Who sent an outgoing message, as the row and the API say. */
export const OutgoingSender = z.enum([
  "switchboard",
  "page_inbox",
  "instagram_inbox",
  "other_app",
  "unknown",
]);
export type OutgoingSender = z.infer<typeof OutgoingSender>;

/** An echo's sender by its `app_id`: ours, Meta's Page or Instagram inbox, another app, or none given. */
export function echoSenderOf(appId: string | null, ourAppId: string | undefined): OutgoingSender {
  return appLabelOf(appId, ourAppId) ?? "unknown";
}

/** Who an app id is, for a thread's owner or an echo's sender; undefined for none. */
export function threadOwnerOf(
  appId: string | null,
  ourAppId: string | undefined,
): "switchboard" | "page_inbox" | "instagram_inbox" | "other_app" | "idle" {
  return appLabelOf(appId, ourAppId) ?? "idle";
}

function appLabelOf(
  appId: string | null,
  ourAppId: string | undefined,
): "switchboard" | "page_inbox" | "instagram_inbox" | "other_app" | undefined {
  if (appId === null) return undefined;
  if (ourAppId !== undefined && appId === ourAppId) return "switchboard";
  if (appId === PAGE_INBOX_APP_ID) return "page_inbox";
  if (appId === INSTAGRAM_INBOX_APP_ID) return "instagram_inbox";
  return "other_app";
}

/** `is_echo`: a message the page sent, from our app (`appId` ours, `metadata` our message id) or elsewhere. */
export const EchoEvent = EventBase.extend({
  kind: z.literal("echo"),
  mid: z.string(),
  text: z.string().nullable(),
  attachments: z.array(Attachment),
  appId: z.string().nullable(),
  metadata: z.string().nullable(),
});

export const PostbackEvent = EventBase.extend({
  kind: z.literal("postback"),
  mid: z.string().nullable(),
  title: z.string().nullable(),
  payload: z.string().nullable(),
  referral: z.unknown().nullable(),
});

export const DeliveryEvent = EventBase.extend({
  kind: z.literal("delivery"),
  watermark: z.number().int(),
  mids: z.array(z.string()),
});

export const ReadEvent = EventBase.extend({
  kind: z.literal("read"),
  watermark: z.number().int(),
});

export const ReactionEvent = EventBase.extend({
  kind: z.literal("reaction"),
  action: z.enum(["react", "unreact"]),
  reaction: z.string().nullable(),
  emoji: z.string().nullable(),
  targetMid: z.string().nullable(),
});

/** `message_edits`: the customer changed a message's text; `numEdit` counts its edits (1…5). */
export const EditEvent = EventBase.extend({
  kind: z.literal("edit"),
  mid: z.string(),
  text: z.string().nullable(),
  numEdit: z.number().int().nonnegative(),
});

/** Instagram `is_deleted`: the customer unsent message `mid`. */
export const UnsendEvent = EventBase.extend({ kind: z.literal("unsend"), mid: z.string() });

export const ReferralEvent = EventBase.extend({ kind: z.literal("referral"), referral: z.unknown() });
export const OptinEvent = EventBase.extend({ kind: z.literal("optin"), optin: z.unknown() });
/** Anything Meta sends that we do not model yet; kept whole. */
/**
 * Conversation routing (the former Handover Protocol): `pass`/`take` give the thread to `newOwnerAppId`
 * (Meta's inbox apps: PAGE_INBOX_APP_ID, INSTAGRAM_INBOX_APP_ID); `request` only asks for it.
 */
export const ThreadControlEvent = EventBase.extend({
  kind: z.literal("thread_control"),
  action: z.enum(["pass", "take", "request"]),
  newOwnerAppId: z.string().nullable(),
  previousOwnerAppId: z.string().nullable(),
  requestedOwnerAppId: z.string().nullable(),
  metadata: z.string().nullable(),
});

/** `messaging_policy_enforcement`: Meta blocked, unblocked or warned the Page; no person (psid NO_PERSON_PSID). */
export const PolicyEnforcementEvent = EventBase.extend({
  kind: z.literal("policy_enforcement"),
  action: z.enum(["block", "unblock", "warning"]),
  reason: z.string().nullable(),
});

/** `messaging_account_linking`: the person linked or unlinked their account on the business's site. */
export const AccountLinkingEvent = EventBase.extend({
  kind: z.literal("account_linking"),
  status: z.enum(["linked", "unlinked"]),
  authorizationCode: z.string().nullable(),
});

export const UnsupportedEvent = EventBase.extend({ kind: z.literal("unsupported"), reason: z.string() });

export const MessagingEvent = z.discriminatedUnion("kind", [
  IncomingMessageEvent,
  EchoEvent,
  PostbackEvent,
  DeliveryEvent,
  ReadEvent,
  ReactionEvent,
  EditEvent,
  UnsendEvent,
  ReferralEvent,
  OptinEvent,
  ThreadControlEvent,
  PolicyEnforcementEvent,
  AccountLinkingEvent,
  UnsupportedEvent,
]);
export type MessagingEvent = z.infer<typeof MessagingEvent>;
export type MessagingEventKind = MessagingEvent["kind"];
export type IncomingMessageEvent = z.infer<typeof IncomingMessageEvent>;
export type EchoEvent = z.infer<typeof EchoEvent>;
export type PostbackEvent = z.infer<typeof PostbackEvent>;
export type DeliveryEvent = z.infer<typeof DeliveryEvent>;
export type ReadEvent = z.infer<typeof ReadEvent>;
export type ReactionEvent = z.infer<typeof ReactionEvent>;
export type EditEvent = z.infer<typeof EditEvent>;
export type UnsendEvent = z.infer<typeof UnsendEvent>;
export type ThreadControlEvent = z.infer<typeof ThreadControlEvent>;
export type PolicyEnforcementEvent = z.infer<typeof PolicyEnforcementEvent>;
export type AccountLinkingEvent = z.infer<typeof AccountLinkingEvent>;
export type ReferralEvent = z.infer<typeof ReferralEvent>;
export type OptinEvent = z.infer<typeof OptinEvent>;
export type UnsupportedEvent = z.infer<typeof UnsupportedEvent>;

/** `blocked`: Meta blocked the Page from messaging (policy enforcement); it is routed and subscribed, never sent to. */
export const PageStatus = z.enum(["active", "disabled", "reauthorization_required", "blocked"]);
export type PageStatus = z.infer<typeof PageStatus>;

/** Page lifecycle events. They never carry a token: consumers read it from the database. */
export const PageLifecycleEvent = z.object({
  type: z.enum([
    "page.connected",
    "page.disconnected",
    "page.token_updated",
    "page.status_changed",
    /** The page's webhook subscription became healthy or unhealthy (subscribed, missing, error, …). */
    "page.subscription_changed",
  ]),
  pageId: z.string(),
  companyId: z.string(),
  platform: Platform.default("messenger"),
  status: PageStatus,
  reason: z.string().nullable().default(null),
  /** For `page.subscription_changed`: the subscription's status now and before. */
  subscriptionStatus: z.string().optional(),
  previousSubscriptionStatus: z.string().nullable().optional(),
  occurredAt: z.number().int(),
});
export type PageLifecycleEvent = z.infer<typeof PageLifecycleEvent>;

export const MessageDirection = z.enum(["incoming", "outgoing"]);
export const MessageStatus = z.enum(["received", "sending", "sent", "delivered", "read", "failed"]);
export type MessageStatus = z.infer<typeof MessageStatus>;

/** Outgoing status order: a status only moves right. `failed` ranks with `sending`: an echo proves it went out. */
const OUTGOING_RANK: Record<MessageStatus, number> = {
  received: 0,
  sending: 0,
  failed: 0,
  sent: 1,
  delivered: 2,
  read: 3,
};

/** The later of two statuses of an outgoing message (statuses never move backwards). */
export function laterOutgoingStatus(a: MessageStatus, b: MessageStatus): MessageStatus {
  return OUTGOING_RANK[b] > OUTGOING_RANK[a] ? b : a;
}

/** Facts published after commit for the product built on Switchboard. */
export const DomainEvent = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("conversation.created"),
    conversationId: z.string(),
    pageId: z.string(),
    platform: Platform.default("messenger"),
    psid: z.string(),
    occurredAt: z.number().int(),
  }),
  z.object({
    type: z.literal("message.created"),
    messageId: z.string(),
    conversationId: z.string(),
    pageId: z.string(),
    platform: Platform.default("messenger"),
    psid: z.string(),
    mid: z.string().nullable(),
    direction: MessageDirection,
    kind: z.string(),
    sentAt: z.number().int(),
    occurredAt: z.number().int(),
  }),
  z.object({
    // The customer edited the message: its text is the latest (read it through /v1), `editCount` its edits.
    type: z.literal("message.edited"),
    messageId: z.string(),
    conversationId: z.string(),
    pageId: z.string(),
    platform: Platform.default("messenger"),
    psid: z.string(),
    mid: z.string(),
    editCount: z.number().int(),
    editedAt: z.number().int(),
    occurredAt: z.number().int(),
  }),
  z.object({
    // The customer unsent it: the row keeps its place, its text and attachment URLs are cleared.
    type: z.literal("message.deleted"),
    messageId: z.string(),
    conversationId: z.string(),
    pageId: z.string(),
    platform: Platform.default("messenger"),
    psid: z.string(),
    mid: z.string(),
    deletedAt: z.number().int(),
    occurredAt: z.number().int(),
  }),
  z.object({
    // Conversation routing moved the thread: `owner` says who answers now (switchboard = this app).
    type: z.literal("conversation.thread_owner_changed"),
    conversationId: z.string(),
    pageId: z.string(),
    platform: Platform.default("messenger"),
    psid: z.string(),
    ownerAppId: z.string().nullable(),
    owner: z.enum(["switchboard", "page_inbox", "instagram_inbox", "other_app", "idle"]),
    previousOwnerAppId: z.string().nullable(),
    changedAt: z.number().int(),
    occurredAt: z.number().int(),
  }),
  z.object({
    type: z.literal("message.status_changed"),
    messageId: z.string(),
    pageId: z.string(),
    platform: Platform.default("messenger"),
    psid: z.string(),
    status: MessageStatus,
    previousStatus: MessageStatus,
    occurredAt: z.number().int(),
  }),
  z.object({
    type: z.literal("message.sent"),
    messageId: z.string(),
    pageId: z.string(),
    platform: Platform.default("messenger"),
    psid: z.string(),
    mid: z.string(),
    occurredAt: z.number().int(),
  }),
  z.object({
    type: z.literal("message.failed"),
    messageId: z.string(),
    pageId: z.string(),
    platform: Platform.default("messenger"),
    psid: z.string(),
    reason: z.string(),
    occurredAt: z.number().int(),
  }),
]);
export type DomainEvent = z.infer<typeof DomainEvent>;

/**
 * The `Nats-Msg-Id` of a domain event: one per fact (a conversation is created once, a message once, each
 * status once), so every writer of the outbox agrees and a republished fact is dropped by the stream.
 */
export function domainEventId(event: DomainEvent): string {
  switch (event.type) {
    case "conversation.created":
      return `${event.type}:${event.conversationId}`;
    case "conversation.thread_owner_changed":
      // Meta's time of the change: a redelivered pass or take is the same fact.
      return `${event.type}:${event.conversationId}:${event.changedAt}`;
    case "message.created":
    case "message.deleted":
    case "message.sent":
    case "message.failed":
      return `${event.type}:${event.messageId}`;
    case "message.edited":
      // A higher num_edit only: (message, count) happens once.
      return `${event.type}:${event.messageId}:${event.editCount}`;
    case "message.status_changed":
      // Status only moves forward, so (message, status) happens once.
      return `${event.type}:${event.messageId}:${event.status}`;
  }
}
