import { createHash } from "node:crypto";
import {
  type Attachment,
  conversationKey,
  type IncomingMessageEvent,
  type MessageAttachment,
  type MessagingEvent,
  MessagingItem,
  NO_PERSON_PSID,
  type Platform,
  USER_REF_PSID_PREFIX,
  type WebhookEntry,
} from "@switchboard/contracts";
import type { z } from "zod";

/** What the router knows about an entry besides its body. */
export interface EntryContext {
  pageId: string;
  companyId: string;
  platform: Platform;
  traceId: string;
  receivedAt: number;
}

/**
 * One entry → one typed event per `messaging[]` and `standby[]` item, in Meta's order. Pure: the same
 * entry always yields the same events with the same `eventId`s, so a re-routed entry is deduplicated
 * by the events stream. Message events leave here with `profileStatus: "not_requested"`.
 */
export function normaliseEntry(entry: WebhookEntry, context: EntryContext): MessagingEvent[] {
  const time = entry.time ?? context.receivedAt;
  return [
    ...(entry.messaging ?? []).map((item) => normaliseItem(item, time, context)),
    // Conversation routing: another app (the Page inbox) controls these threads; kept, marked.
    ...(entry.standby ?? []).map((item) => ({ ...normaliseItem(item, time, context), standby: true })),
  ];
}

export function normaliseItem(raw: unknown, entryTime: number, context: EntryContext): MessagingEvent {
  const parsed = MessagingItem.safeParse(raw);
  if (!parsed.success) {
    const psid = personOf(raw, context.pageId);
    const reason = `item does not match Meta's schema: ${parsed.error.issues
      .slice(0, 3)
      .map((i) => `${i.path.join(".")} ${i.message}`)
      .join("; ")}`;
    return {
      ...base(raw, context, psid, entryTime, hashId(context.pageId, "unsupported", raw)),
      kind: "unsupported",
      reason,
    };
  }
  const item = parsed.data;
  const timestamp = item.timestamp ?? entryTime;
  const isEcho = item.message?.is_echo === true;
  const psid = personOf(item, context.pageId, isEcho);
  const common = (kind: string, stableKey?: string) =>
    base(raw, context, psid, timestamp, stableKey ?? hashId(context.pageId, kind, raw));

  if (item.message?.is_deleted) {
    // Instagram: the customer unsent `mid`. Never a second message with the same mid.
    return {
      ...common("unsend", `${context.pageId}:unsend:${item.message.mid}`),
      kind: "unsend",
      mid: item.message.mid,
    };
  }
  if (item.message && isEcho) {
    return {
      ...common("echo", `${context.pageId}:echo:${item.message.mid}`),
      kind: "echo",
      mid: item.message.mid,
      text: item.message.text ?? null,
      attachments: attachmentsOf(item.message.attachments),
      appId: item.message.app_id ?? null,
      metadata: item.message.metadata ?? null,
    };
  }
  if (item.message) {
    return {
      ...common("message", `${context.pageId}:message:${item.message.mid}`),
      kind: "message",
      mid: item.message.mid,
      text: item.message.text ?? null,
      attachments: attachmentsOf(item.message.attachments),
      quickReplyPayload: item.message.quick_reply?.payload ?? null,
      replyToMid: item.message.reply_to?.mid ?? null,
      replyToStory: storyOf(item.message.reply_to?.story),
      unsupported: item.message.is_unsupported === true,
      referral: item.message.referral ?? null,
      profile: null,
      profileStatus: "not_requested",
    };
  }
  if (item.reaction) {
    return {
      ...common("reaction"),
      kind: "reaction",
      action: item.reaction.action,
      reaction: item.reaction.reaction ?? null,
      emoji: item.reaction.emoji ?? null,
      targetMid: item.reaction.mid ?? null,
    };
  }
  if (item.postback) {
    return {
      ...common("postback"),
      kind: "postback",
      mid: item.postback.mid ?? null,
      title: item.postback.title ?? null,
      payload: item.postback.payload ?? null,
      referral: item.postback.referral ?? null,
    };
  }
  if (item.delivery) {
    return {
      ...common("delivery"),
      kind: "delivery",
      watermark: item.delivery.watermark,
      mids: item.delivery.mids ?? [],
    };
  }
  if (item.read) {
    // Instagram's seen names the message instead: everything sent before the moment it was seen is read.
    return { ...common("read"), kind: "read", watermark: item.read.watermark ?? timestamp };
  }
  if (item.message_edit) {
    const edit = item.message_edit;
    return {
      // One event per revision: Meta's retry of the same edit is the same event.
      ...common("edit", `${context.pageId}:edit:${edit.mid}:${edit.num_edit}`),
      kind: "edit",
      mid: edit.mid,
      text: edit.text ?? null,
      numEdit: edit.num_edit,
    };
  }
  if (item.optin) {
    return { ...common("optin"), kind: "optin", optin: item.optin };
  }
  if (item.referral) {
    return { ...common("referral"), kind: "referral", referral: item.referral };
  }
  const control = item.pass_thread_control ?? item.take_thread_control ?? item.request_thread_control;
  if (control) {
    const action = item.pass_thread_control ? "pass" : item.take_thread_control ? "take" : "request";
    return {
      ...common("thread_control", `${context.pageId}:thread_control:${psid}:${action}:${timestamp}`),
      kind: "thread_control",
      action,
      newOwnerAppId: control.new_owner_app_id ?? null,
      previousOwnerAppId: control.previous_owner_app_id ?? null,
      requestedOwnerAppId: control.requested_owner_app_id ?? null,
      metadata: control.metadata ?? null,
    };
  }
  const policy = item.policy_enforcement ?? item["policy-enforcement"];
  if (policy) {
    return {
      ...common("policy_enforcement", `${context.pageId}:policy:${policy.action}:${timestamp}`),
      kind: "policy_enforcement",
      action: policy.action,
      reason: policy.reason ?? null,
    };
  }
  if (item.account_linking) {
    return {
      ...common("account_linking", `${context.pageId}:account_linking:${psid}:${timestamp}`),
      kind: "account_linking",
      status: item.account_linking.status,
      authorizationCode: item.account_linking.authorization_code ?? null,
    };
  }
  // App roles, game plays: kept whole.
  const fields = Object.keys(item).filter((k) => !["sender", "recipient", "timestamp"].includes(k));
  return {
    ...common("unsupported"),
    kind: "unsupported",
    reason: fields.length > 0 ? `unmodelled item: ${fields.join(", ")}` : "item carries no event",
  };
}

function base(raw: unknown, context: EntryContext, psid: string, timestamp: number, eventId: string) {
  return {
    eventId,
    pageId: context.pageId,
    companyId: context.companyId,
    platform: context.platform,
    standby: false,
    psid,
    conversationKey: conversationKey(context.pageId, psid),
    timestamp,
    traceId: context.traceId,
    receivedAt: context.receivedAt,
    raw,
  };
}

/**
 * The user's id whichever side sent the item. Meta's documents put the user as sender (the page for
 * echoes), but recorded delivery and read items have the page as sender too (see
 * fixtures/peer-webhooks.json): whichever party is not the page is the user.
 */
function personOf(value: unknown, pageId: string, isEcho = false): string {
  const item = (value ?? {}) as {
    sender?: { id?: unknown; user_ref?: unknown };
    recipient?: { id?: unknown; user_ref?: unknown };
    optin?: { user_ref?: unknown };
  };
  const id = (v: unknown) => (typeof v === "string" || typeof v === "number" ? String(v) : undefined);
  const sender = id(item.sender?.id);
  const recipient = id(item.recipient?.id);
  if ((isEcho || sender === pageId) && recipient) return recipient;
  if (sender) return sender;
  const ref = id(item.sender?.user_ref) ?? id(item.optin?.user_ref) ?? id(item.recipient?.user_ref);
  if (ref) return `${USER_REF_PSID_PREFIX}${ref}`;
  return NO_PERSON_PSID;
}

function storyOf(story: { id?: string; url?: string } | undefined): IncomingMessageEvent["replyToStory"] {
  if (story === undefined) return null;
  return { id: story.id ?? null, url: story.url ?? null };
}

function attachmentsOf(list: Array<z.infer<typeof MessageAttachment>> | undefined): Attachment[] {
  return (list ?? []).map((attachment) => {
    const payload =
      attachment.payload && typeof attachment.payload === "object"
        ? (attachment.payload as Record<string, unknown>)
        : undefined;
    const str = (v: unknown) => (typeof v === "string" ? v : typeof v === "number" ? String(v) : null);
    return {
      type: attachment.type,
      url: str(payload?.url) ?? attachment.url ?? attachment.URL ?? null,
      stickerId: str(payload?.sticker_id),
      title: attachment.title ?? str(payload?.title),
      payload: attachment.payload ?? null,
    };
  });
}

/** A stable id for items without a mid: the same page, kind and bytes always give the same id. */
function hashId(pageId: string, kind: string, raw: unknown): string {
  return `${pageId}:${kind}:${createHash("sha256").update(JSON.stringify(raw)).digest("base64url").slice(0, 32)}`;
}
