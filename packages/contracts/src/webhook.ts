import { z } from "zod";

/**
 * Meta's webhook body, as loose as the wire is. Ids arrive as strings or JSON numbers and
 * timestamps as ints, floats or strings (see ../shared/fixtures): they are coerced, never rejected,
 * and fields we do not model are kept (`z.looseObject`) because Meta signed them.
 */
export const MetaId = z.union([z.string().min(1), z.number()]).transform((id) => String(id));

export const MetaTimestamp = z.union([z.number(), z.string().regex(/^\d+(\.\d+)?$/)]).transform((value) => {
  const n = typeof value === "number" ? value : Number(value);
  // Some senders give seconds; Meta gives milliseconds.
  return Math.trunc(n < 1e11 ? n * 1000 : n);
});

export const Party = z.looseObject({
  id: MetaId.optional(),
  user_ref: MetaId.optional(),
});

export const AttachmentType = z.enum([
  "image",
  "video",
  "audio",
  "file",
  "location",
  "fallback",
  "template",
  "sticker",
  "reel",
  "ig_reel",
  "share",
  "story_mention",
  // Instagram: a shared post (beside `share` since 2025-11), a disappearing photo or video (no URL).
  "ig_post",
  "ephemeral",
  "post",
]);

export const MessageAttachment = z.looseObject({
  type: z.string(),
  title: z.string().optional(),
  // Templates and fallbacks the Page sent (echoes) carry `"url": null` (airyhq/airy#2116).
  URL: z.string().nullable().optional(),
  url: z.string().nullable().optional(),
  // Fallback attachments carry `null` or a string here (see shared fixtures).
  payload: z.union([z.looseObject({}), z.string(), z.null()]).optional(),
});

export const MessageBody = z.looseObject({
  mid: z.string(),
  text: z.string().optional(),
  is_echo: z.boolean().optional(),
  app_id: MetaId.optional(),
  metadata: z.string().optional(),
  attachments: z.array(MessageAttachment).optional(),
  quick_reply: z.looseObject({ payload: z.string() }).optional(),
  // A reply to a message (`mid`) or, on Instagram, to a story (`story: { id, url }`).
  reply_to: z
    .looseObject({
      mid: z.string().optional(),
      story: z.looseObject({ id: MetaId.optional(), url: z.string().optional() }).optional(),
    })
    .optional(),
  sticker_id: MetaId.optional(),
  /** Instagram: the customer unsent this message (`mid` names it). */
  is_deleted: z.boolean().optional(),
  /** Instagram: a message kind the API does not deliver (the row is kept, flagged). */
  is_unsupported: z.boolean().optional(),
  /** A message that came from an ad or an ig.me / m.me link (`source`, `ref`, `ad_id` …). */
  referral: z.looseObject({}).optional(),
});

export const PostbackBody = z.looseObject({
  mid: z.string().optional(),
  title: z.string().optional(),
  payload: z.string().optional(),
  referral: z.looseObject({}).optional(),
});

export const DeliveryBody = z.looseObject({
  mids: z.array(z.string()).optional(),
  watermark: MetaTimestamp,
});

/** Messenger says up to when (`watermark`); Instagram's `messaging_seen` names the message (`mid`). */
export const ReadBody = z
  .looseObject({ watermark: MetaTimestamp.optional(), mid: z.string().optional() })
  .refine(
    (read) => read.watermark !== undefined || read.mid !== undefined,
    "read needs a watermark or a mid",
  );

/** `message_edits`: the customer edited a message (up to 5 times); `num_edit` counts them. */
export const MessageEditBody = z.looseObject({
  mid: z.string(),
  text: z.string().optional(),
  // Documented as an integer, shown as a string in Meta's example.
  num_edit: z.coerce.number().int().nonnegative(),
});

/** Conversation routing (formerly the Handover Protocol); `previous_owner_app_id` is null when idle. */
const AppId = MetaId.nullable().optional();
export const ThreadControlBody = z.looseObject({
  new_owner_app_id: AppId,
  previous_owner_app_id: AppId,
  requested_owner_app_id: AppId,
  metadata: z.string().optional(),
});

/** `messaging_policy_enforcement`: Meta blocked, unblocked or warned the Page (no sender). */
export const PolicyEnforcementBody = z.looseObject({
  action: z.enum(["block", "unblock", "warning"]),
  reason: z.string().optional(),
});

export const AccountLinkingBody = z.looseObject({
  status: z.enum(["linked", "unlinked"]),
  authorization_code: z.string().optional(),
});

export const ReactionBody = z.looseObject({
  mid: z.string().optional(),
  action: z.enum(["react", "unreact"]),
  reaction: z.string().optional(),
  emoji: z.string().optional(),
});

/** One item of `entry[].messaging` (or `entry[].standby`). */
export const MessagingItem = z.looseObject({
  sender: Party.optional(),
  recipient: Party.optional(),
  timestamp: MetaTimestamp.optional(),
  message: MessageBody.optional(),
  postback: PostbackBody.optional(),
  delivery: DeliveryBody.optional(),
  read: ReadBody.optional(),
  reaction: ReactionBody.optional(),
  referral: z.looseObject({}).optional(),
  optin: z.looseObject({}).optional(),
  message_edit: MessageEditBody.optional(),
  pass_thread_control: ThreadControlBody.optional(),
  take_thread_control: ThreadControlBody.optional(),
  request_thread_control: ThreadControlBody.optional(),
  policy_enforcement: PolicyEnforcementBody.optional(),
  // Older documentation (and ker0x/messenger's mocks) spell it with a hyphen.
  "policy-enforcement": PolicyEnforcementBody.optional(),
  account_linking: AccountLinkingBody.optional(),
  app_roles: z.record(z.string(), z.array(z.string())).optional(),
});
export type MessagingItem = z.infer<typeof MessagingItem>;

export const WebhookEntry = z.looseObject({
  id: MetaId,
  time: MetaTimestamp.optional(),
  messaging: z.array(z.unknown()).optional(),
  standby: z.array(z.unknown()).optional(),
  changes: z.array(z.unknown()).optional(),
});
export type WebhookEntry = z.infer<typeof WebhookEntry>;

/** What the ingress needs of an entry to give it its page's subject: the page id. */
export const WebhookEntryAddress = z.looseObject({ id: MetaId });

/** Where a conversation happens: a Facebook Page (Messenger) or an Instagram professional account. */
export const Platform = z.enum(["messenger", "instagram"]);
export type Platform = z.infer<typeof Platform>;

/**
 * The platform a webhook body's `object` carries messages for: `page` (Messenger) or `instagram`
 * (Instagram Direct, through the same Messenger Platform webhooks). Anything else is an app-level object.
 */
export function platformOfObject(object: string): Platform | undefined {
  if (object === "page") return "messenger";
  if (object === "instagram") return "instagram";
  return undefined;
}

/**
 * App-level objects Meta may send to the same callback (user, permissions and application changes):
 * they name no conversation, so they are answered, counted by this name (anything else as `other`, so
 * the metric stays bounded) and never published.
 */
export const APP_OBJECTS = ["user", "permissions", "application"] as const;
export function appObjectLabel(object: string): (typeof APP_OBJECTS)[number] | "other" {
  return (APP_OBJECTS as readonly string[]).includes(object)
    ? (object as (typeof APP_OBJECTS)[number])
    : "other";
}

/**
 * The envelope the ingress checks before it splits a body into entries; each entry is then checked on
 * its own (`WebhookEntryAddress`), so one malformed entry does not hold back the other pages' entries.
 */
export const WebhookEnvelope = z.looseObject({
  object: z.string(),
  entry: z.array(z.unknown()).min(1),
});

/** A body whose every entry names its page. Items stay `unknown` here. */
export const WebhookBody = WebhookEnvelope.extend({
  entry: z.array(WebhookEntryAddress).min(1),
});
export type WebhookBody = z.infer<typeof WebhookBody>;

/**
 * The pseudo page an entry without a usable page id is parked under (`<ns>.unrouted._no_page_id`), and
 * replayed to (`<ns>.webhook.entry._no_page_id`): the page-router takes an entry's page from its `id`.
 */
export const ENTRY_WITHOUT_PAGE = "_no_page_id";

/** zod issues as one line: `entry.1.id Invalid input; …` (the path says which entry and field). */
export function describeIssues(
  issues: ReadonlyArray<{ path: PropertyKey[]; message: string }>,
  path: PropertyKey[] = [],
) {
  return issues
    .map((i) => `${[...path, ...i.path].map(String).join(".") || "entry"} ${i.message}`)
    .join("; ");
}

/**
 * JSON.parse rounds integers above 2^53, and Meta sends such ids unquoted (for example `app_id`).
 * Quoting long integer ids before parsing keeps them exact. The look-behind skips `\"id\":` inside strings.
 */
const LONG_ID =
  /(?<!\\)("(?:id|app_id|sticker_id|new_owner_app_id|previous_owner_app_id|requested_owner_app_id)"\s*:\s*)(-?\d{16,})(?=\s*[,}\]])/g;
export function quoteLongIds(json: string): string {
  return json.replace(LONG_ID, '$1"$2"');
}
