import { z } from "zod";
import { MessageDirection, MessageStatus, OutgoingSender, PageStatus, StoryReference } from "./events";
import { Platform } from "./webhook";

/**
 * The Conversations API (`/v1`) request and response bodies. The message-service validates with them and
 * generates its OpenAPI document from them (`.meta({ id })` names a component), so the document cannot
 * drift from what the server accepts.
 */

export const ApiError = z
  .object({
    error: z.object({
      code: z.enum([
        "unauthorized",
        "not_found",
        "invalid_request",
        "idempotency_key_reused",
        "page_unavailable",
        "unavailable",
      ]),
      message: z.string(),
      issues: z
        .array(z.object({ path: z.string(), message: z.string() }))
        .optional()
        .meta({ description: "What is wrong with each field, for `invalid_request`." }),
    }),
  })
  .meta({ id: "Error" });
export type ApiError = z.infer<typeof ApiError>;

/** Send API quick replies (https://developers.facebook.com/docs/messenger-platform/send-messages/quick-replies). */
export const QuickReplyInput = z
  .discriminatedUnion("content_type", [
    z.object({
      content_type: z.literal("text"),
      title: z.string().min(1).max(20),
      payload: z.string().min(1).max(1000),
      image_url: z.url().optional(),
    }),
    z.object({ content_type: z.enum(["user_phone_number", "user_email"]) }),
  ])
  .meta({ id: "QuickReply" });

export const MessagingType = z.enum(["RESPONSE", "UPDATE", "MESSAGE_TAG"]).meta({
  id: "MessagingType",
  description:
    "RESPONSE (default): a reply within 24 hours of the person's last message. UPDATE: a proactive " +
    "message within that window. MESSAGE_TAG with `tag` (e.g. HUMAN_AGENT): outside the window.",
});

export const SendMessageRequest = z
  .object({
    text: z.string().min(1).max(2000).optional(),
    attachment: z
      .object({
        type: z.enum(["image", "video", "audio", "file"]),
        url: z.url({ protocol: /^https?$/ }),
      })
      .optional(),
    quick_replies: z.array(QuickReplyInput).min(1).max(13).optional(),
    messaging_type: MessagingType.default("RESPONSE"),
    tag: z
      .string()
      .regex(/^[A-Z_]+$/)
      .optional()
      .meta({ description: "Required with MESSAGE_TAG, e.g. HUMAN_AGENT, ACCOUNT_UPDATE." }),
  })
  .superRefine((body, ctx) => {
    if ((body.text === undefined) === (body.attachment === undefined)) {
      ctx.addIssue({ code: "custom", path: ["text"], message: "give either text or attachment" });
    }
    if (body.messaging_type === "MESSAGE_TAG" && !body.tag) {
      ctx.addIssue({ code: "custom", path: ["tag"], message: "MESSAGE_TAG needs a tag" });
    }
    if (body.messaging_type !== "MESSAGE_TAG" && body.tag) {
      ctx.addIssue({ code: "custom", path: ["tag"], message: "tag is only for MESSAGE_TAG" });
    }
  })
  .meta({
    id: "SendMessageRequest",
    example: { text: "Your order has shipped." },
  });
export type SendMessageRequest = z.infer<typeof SendMessageRequest>;

export const SendMessageAccepted = z
  .object({
    id: z.uuid().meta({ description: "Switchboard's message id (Meta's `mid` comes once sent)." }),
    status: MessageStatus,
  })
  .meta({ id: "SendMessageAccepted" });
export type SendMessageAccepted = z.infer<typeof SendMessageAccepted>;

export const PageView = z
  .object({
    pageId: z
      .string()
      .meta({ description: "The Facebook Page's id, or the Instagram account's (its webhooks' entry.id)." }),
    name: z.string(),
    platform: Platform.meta({
      description: "messenger (a Facebook Page) or instagram (an Instagram account).",
    }),
    status: PageStatus,
    statusReason: z.string().nullable(),
    tokenExpiresAt: z.iso.datetime().nullable().meta({
      description: "When the stored token expires, when known (Instagram tokens are refreshed before).",
    }),
    policy: z
      .object({
        action: z
          .string()
          .meta({ description: "Meta's last policy enforcement: block, unblock or warning." }),
        reason: z.string().nullable(),
        changedAt: z.iso.datetime(),
      })
      .nullable()
      .meta({
        description: "Meta's last policy enforcement of the page; a blocked page has status blocked.",
      }),
    subscription: z
      .object({
        status: z.string(),
        subscribedFields: z.array(z.string()),
        lastCheckedAt: z.iso.datetime().nullable(),
      })
      .nullable(),
  })
  .meta({ id: "Page" });
export type PageView = z.infer<typeof PageView>;

export const MessageView = z
  .object({
    id: z.uuid(),
    platform: Platform,
    mid: z.string().nullable().meta({ description: "Meta's message id; null while a send is queued." }),
    direction: MessageDirection,
    kind: z.string().meta({ description: "text, attachment, postback, …" }),
    text: z.string().nullable(),
    payload: z.record(z.string(), z.unknown()).meta({ description: "Attachments, quick reply, postback …" }),
    status: MessageStatus,
    error: z.string().nullable().meta({ description: "Why a send failed, in words." }),
    sentBy: OutgoingSender.nullable().meta({
      description:
        "Outgoing: switchboard (our sends), page_inbox / instagram_inbox (a person in Meta's inbox), other_app, unknown.",
    }),
    editCount: z
      .number()
      .int()
      .meta({ description: "How many times the customer edited it (`text` is the latest)." }),
    editedAt: z.iso.datetime().nullable().meta({ description: "When it was last edited." }),
    deletedAt: z.iso.datetime().nullable().meta({
      description: "When the customer unsent it (Instagram); its text and attachment URLs are gone.",
    }),
    replyTo: z
      .object({
        mid: z.string().nullable(),
        story: StoryReference.nullable(),
      })
      .nullable()
      .meta({
        description:
          "What the customer answered: one of the conversation's messages (`mid`) or, on Instagram, the account's story.",
      }),
    unsupported: z.boolean().meta({
      description:
        "Instagram `is_unsupported`: a message kind Meta's API does not deliver (kept without content).",
    }),
    receivedOnStandby: z.boolean().meta({
      description:
        "Received while another app (e.g. the Page inbox) controlled the thread (conversation routing).",
    }),
    sentAt: z.iso.datetime().meta({ description: "Meta's timestamp (the conversation's order)." }),
    createdAt: z.iso.datetime(),
  })
  .meta({ id: "Message" });
export type MessageView = z.infer<typeof MessageView>;

export const ConversationView = z
  .object({
    id: z.uuid(),
    psid: z
      .string()
      .meta({ description: "The person's page-scoped id (PSID), or Instagram-scoped id (IGSID)." }),
    platform: Platform,
    contact: z.object({
      firstName: z.string().nullable(),
      lastName: z.string().nullable(),
      profilePicUrl: z.string().nullable(),
      name: z.string().nullable().meta({ description: "Instagram: the display name." }),
      username: z.string().nullable().meta({ description: "Instagram: the @username." }),
    }),
    threadOwner: z
      .object({
        appId: z.string().nullable(),
        since: z.iso.datetime(),
      })
      .nullable()
      .meta({
        description:
          "Conversation routing: the app Meta last gave the thread to (263902037430900 = the Page inbox, 1217981644879628 = the Instagram inbox); null when Meta never said.",
      }),
    lastMessageAt: z.iso.datetime().nullable(),
    lastMessage: MessageView.nullable(),
  })
  .meta({ id: "Conversation" });
export type ConversationView = z.infer<typeof ConversationView>;

export const PaginationQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(25),
  cursor: z.string().max(500).optional().meta({ description: "`nextCursor` of the previous page." }),
});

export const MessagesQuery = PaginationQuery.extend({
  order: z
    .enum(["asc", "desc"])
    .default("asc")
    .meta({ description: "asc: oldest first (Meta's timestamp); desc: newest first." }),
});

function listOf<T extends z.ZodType>(item: T, id: string) {
  return z
    .object({
      data: z.array(item),
      nextCursor: z
        .string()
        .nullable()
        .meta({ description: "Pass as `cursor` for the next page; null at the end." }),
    })
    .meta({ id });
}

export const PageList = z.object({ data: z.array(PageView) }).meta({ id: "PageList" });
export const ConversationList = listOf(ConversationView, "ConversationList");
export const MessageList = listOf(MessageView, "MessageList");
