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

/** The envelope the ingress checks before it splits a body into entries. Items stay `unknown` there. */
export const WebhookBody = z.looseObject({
  object: z.string(),
  entry: z.array(z.looseObject({ id: MetaId })).min(1),
});
export type WebhookBody = z.infer<typeof WebhookBody>;

/**
 * JSON.parse rounds integers above 2^53, and Meta sends such ids unquoted (for example `app_id`).
 * Quoting long integer ids before parsing keeps them exact. The look-behind skips `\"id\":` inside strings.
 */
const LONG_ID = /(?<!\\)("(?:id|app_id|sticker_id)"\s*:\s*)(-?\d{16,})(?=\s*[,}\]])/g;
export function quoteLongIds(json: string): string {
  return json.replace(LONG_ID, '$1"$2"');
}
