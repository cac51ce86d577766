import { createHmac, randomUUID } from "node:crypto";
import { webhookSignature } from "@switchboard/contracts";

/** Marks an id Meta sends as a bare JSON number (e.g. `app_id`), even beyond 2^53. */
export class RawNumber {
  constructor(readonly digits: string) {}
  toJSON(): string {
    return `\u0000raw:${this.digits}`;
  }
}

/**
 * Serialises like Meta does: non-ASCII as `\uXXXX` (emoji as surrogate pairs), `/` as `\/`, long ids as bare
 * numbers. Re-serialising the parsed body gives other bytes: the receiver must verify the raw bytes.
 */
export function metaJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/"\\u0000raw:(\d+)"/g, "$1")
    .replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)
    .replaceAll("/", "\\/");
}

/** A webhook entry as Meta sends it, or the contracts' fixture shape (`pageId` instead of `id`). */
export type WebhookEntryInput =
  | { id: string; time?: number; messaging?: unknown[]; standby?: unknown[] }
  | { pageId: string; time?: number; messaging?: unknown[]; standby?: unknown[] };

/** A webhook body around the entries: `object` is "page" for Messenger, "instagram" for Instagram accounts. */
export function webhookBodyFor(entries: WebhookEntryInput[], object = "page"): Record<string, unknown> {
  return {
    object,
    entry: entries.map((e) => {
      const { time, messaging, standby } = e;
      return {
        id: "id" in e ? e.id : e.pageId,
        time: time ?? Date.now(),
        ...(messaging ? { messaging } : {}),
        ...(standby ? { standby } : {}),
      };
    }),
  };
}

export interface SignedDelivery {
  url: string;
  appSecret: string;
  /** A string is sent byte for byte; anything else is serialised with `metaJson`. */
  body: unknown;
  /** Sign with a wrong secret, as an attacker would. */
  badSignature?: boolean;
  timeoutMs?: number;
}

export interface DeliveryResult {
  status: number;
  body: string;
  sentBody: string;
}

/** POSTs a webhook the way Meta does: `X-Hub-Signature-256` over the exact bytes (plus the legacy SHA-1). */
export async function deliverSignedWebhook({
  url,
  appSecret,
  body,
  badSignature = false,
  timeoutMs = 20_000,
}: SignedDelivery): Promise<DeliveryResult> {
  const raw = typeof body === "string" ? body : metaJson(body);
  const secret = badSignature ? `not-${appSecret}-${randomUUID()}` : appSecret;
  const response = await fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "user-agent": "facebookexternalua",
      "x-hub-signature-256": webhookSignature(raw, secret),
      "x-hub-signature": `sha1=${createHmac("sha1", secret).update(raw).digest("hex")}`,
    },
    body: raw,
    signal: AbortSignal.timeout(timeoutMs),
  });
  return { status: response.status, body: await response.text(), sentBody: raw };
}
