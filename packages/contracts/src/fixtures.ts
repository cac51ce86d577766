import { createHmac, randomUUID } from "node:crypto";

/** `X-Hub-Signature-256` value for a raw body: what Meta sends and the ingress checks. */
export function webhookSignature(rawBody: string | Buffer, appSecret: string): string {
  return `sha256=${createHmac("sha256", appSecret).update(rawBody).digest("hex")}`;
}

export interface TextItemInput {
  pageId: string;
  psid: string;
  text?: string;
  mid?: string;
  timestamp?: number;
}

/** A Messenger text message item in Meta's wire shape (sender = user, recipient = page). */
export function buildTextMessageItem(input: TextItemInput) {
  return {
    sender: { id: input.psid },
    recipient: { id: input.pageId },
    timestamp: input.timestamp ?? Date.now(),
    message: { mid: input.mid ?? `m_${randomUUID()}`, text: input.text ?? "hello" },
  };
}

/** An echo item: the page sent `text` (sender = page, recipient = user). */
export function buildEchoItem(input: TextItemInput & { appId?: string; metadata?: string }) {
  return {
    sender: { id: input.pageId },
    recipient: { id: input.psid },
    timestamp: input.timestamp ?? Date.now(),
    message: {
      is_echo: true,
      mid: input.mid ?? `m_${randomUUID()}`,
      text: input.text ?? "hello",
      ...(input.appId ? { app_id: input.appId } : {}),
      ...(input.metadata ? { metadata: input.metadata } : {}),
    },
  };
}

export interface EntryInput {
  pageId: string;
  time?: number;
  messaging?: unknown[];
  standby?: unknown[];
}

export function buildWebhookBody(entries: EntryInput[]) {
  return {
    object: "page",
    entry: entries.map((e) => ({
      id: e.pageId,
      time: e.time ?? Date.now(),
      ...(e.messaging ? { messaging: e.messaging } : {}),
      ...(e.standby ? { standby: e.standby } : {}),
    })),
  };
}
