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
]);

export const MessageAttachment = z.looseObject({
  type: z.string(),
  title: z.string().optional(),
  URL: z.string().optional(),
  url: z.string().optional(),
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
  reply_to: z.looseObject({ mid: z.string() }).optional(),
  sticker_id: MetaId.optional(),
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

export const ReadBody = z.looseObject({ watermark: MetaTimestamp });

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
const LONG_ID = /(?<!\\)("(?:id|app_id|sticker_id)"\s*:\s*)(-?\d{16,})(?=\s*[,}\]])/g;
export function quoteLongIds(json: string): string {
  return json.replace(LONG_ID, '$1"$2"');
}
