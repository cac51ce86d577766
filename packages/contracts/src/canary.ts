import { z } from "zod";
import type { WebhookEntry } from "./webhook";

/**
 * The webhook canary: a synthetic, correctly signed webhook for a page id reserved for it
 * (`CANARY_PAGE_ID`), sent to the public ingress URL like Meta's, recognised by the page-router and
 * published as a `CanaryEvent` on its own subject instead of a messaging event, so it is never stored
 * as a customer message. The console's canary sink measures the round trip.
 */
export const CANARY_MID_PREFIX = "sb-canary.";
/** The canary's "customer": never a real PSID. */
export const CANARY_PSID = "0";

export const CanaryEvent = z.object({
  canaryId: z.string().min(1),
  pageId: z.string(),
  /** When the canary sender sent the webhook (ms). */
  sentAt: z.number().int(),
  /** When the ingress received it (ms, from the entry's Sb-Received-At header). */
  receivedAt: z.number().int(),
  /** When the page-router published this event (ms). */
  routedAt: z.number().int(),
});
export type CanaryEvent = z.infer<typeof CanaryEvent>;

/** The canary's webhook entry, in Meta's wire shape: one text message whose mid carries the canary id. */
export function buildCanaryEntry(input: { pageId: string; canaryId: string; sentAt: number }) {
  return {
    id: input.pageId,
    time: input.sentAt,
    messaging: [
      {
        sender: { id: CANARY_PSID },
        recipient: { id: input.pageId },
        timestamp: input.sentAt,
        message: { mid: `${CANARY_MID_PREFIX}${input.canaryId}`, text: "switchboard webhook canary" },
      },
    ],
  };
}

/** The page-router's side: the canary event for a canary entry, or undefined when it is not one. */
export function canaryEventOf(
  entry: WebhookEntry,
  receivedAt: number,
  routedAt: number,
): CanaryEvent | undefined {
  const item = entry.messaging?.[0] as { timestamp?: number; message?: { mid?: string } } | undefined;
  const mid = item?.message?.mid;
  if (!mid?.startsWith(CANARY_MID_PREFIX) || typeof item?.timestamp !== "number") return undefined;
  return {
    canaryId: mid.slice(CANARY_MID_PREFIX.length),
    pageId: entry.id,
    sentAt: item.timestamp,
    receivedAt: Math.trunc(receivedAt),
    routedAt: Math.trunc(routedAt),
  };
}
