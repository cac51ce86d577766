import { createHash, randomBytes } from "node:crypto";
import { z } from "zod";
import { Platform } from "./webhook";

/**
 * One outgoing message waiting for the send worker, on the `sends` work queue (`Nats-Msg-Id` = the message
 * id, so a repeated enqueue is dropped). It carries ids only: the worker re-reads the `messages` row, which
 * holds the content and is the truth about whether the message already went out.
 */
export const SendRequest = z.object({
  messageId: z.string().uuid(),
  pageId: z.string(),
  platform: Platform.default("messenger"),
  psid: z.string(),
  /** Who queued it: the product through the API, or an operator through the CLI. */
  origin: z.enum(["api", "cli"]),
  requestedAt: z.number().int(),
  traceId: z.string(),
});
export type SendRequest = z.infer<typeof SendRequest>;

/**
 * The `Nats-Msg-Id` (and outbox row id) of a send request. The request queued with the row is `attempt`
 * 0; the sweeper re-queues a lost one under a new id (the stream would drop the first id again), which is
 * safe because the worker decides from the row, never from the request, whether to call Meta.
 */
export function sendRequestMsgId(messageId: string, requeue = 0): string {
  return requeue === 0 ? `send-request:${messageId}` : `send-request:${messageId}:requeue-${requeue}`;
}

/**
 * API keys are `sbk_` + 32 random bytes (base64url). Only the SHA-256 is stored; `prefix` identifies a
 * key in listings and logs without revealing it.
 */
export const API_KEY_PREFIX = "sbk_";

export function hashApiKey(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

export function newApiKey(): { key: string; keyHash: string; prefix: string } {
  const key = `${API_KEY_PREFIX}${randomBytes(32).toString("base64url")}`;
  return { key, keyHash: hashApiKey(key), prefix: key.slice(0, API_KEY_PREFIX.length + 8) };
}
