import { createHmac, randomBytes } from "node:crypto";

/**
 * Standard Webhooks signing (https://www.standardwebhooks.com): an endpoint's secret is `whsec_` and
 * base64 of random bytes; a delivery carries `webhook-id`, `webhook-timestamp` (seconds) and
 * `webhook-signature`: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` per secret, space
 * separated, so a receiver keeps accepting while a secret is being rotated.
 */
export const SECRET_PREFIX = "whsec_";

/** A new endpoint secret: 24 random bytes (192 bits), as the Standard Webhooks libraries generate. */
export function generateEndpointSecret(): string {
  return SECRET_PREFIX + randomBytes(24).toString("base64");
}

function secretKey(secret: string): Buffer {
  if (!secret.startsWith(SECRET_PREFIX)) throw new Error("an endpoint secret starts with whsec_");
  return Buffer.from(secret.slice(SECRET_PREFIX.length), "base64");
}

/** One `v1,<signature>` for one secret. */
export function signatureOf(secret: string, id: string, timestampSeconds: number, body: string): string {
  const digest = createHmac("sha256", secretKey(secret))
    .update(`${id}.${timestampSeconds}.${body}`)
    .digest("base64");
  return `v1,${digest}`;
}

export interface SignedHeaders {
  "webhook-id": string;
  "webhook-timestamp": string;
  "webhook-signature": string;
}

/** The three headers of a delivery, signed with every secret given (current first). */
export function signDelivery(delivery: {
  id: string;
  timestampSeconds: number;
  body: string;
  secrets: string[];
}): SignedHeaders {
  if (delivery.secrets.length === 0) throw new Error("a delivery needs at least one secret");
  return {
    "webhook-id": delivery.id,
    "webhook-timestamp": String(delivery.timestampSeconds),
    "webhook-signature": delivery.secrets
      .map((secret) => signatureOf(secret, delivery.id, delivery.timestampSeconds, delivery.body))
      .join(" "),
  };
}
