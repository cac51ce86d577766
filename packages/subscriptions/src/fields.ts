import { z } from "zod";

/**
 * The webhook fields each page is subscribed to by default: every Messenger event Switchboard handles
 * (https://developers.facebook.com/docs/messenger-platform/webhooks#event-notifications).
 */
export const DEFAULT_SUBSCRIBED_FIELDS = [
  "messages",
  "messaging_postbacks",
  "message_deliveries",
  "message_reads",
  "message_echoes",
  "message_reactions",
  "messaging_referrals",
  "messaging_optins",
] as const;

/** `SUBSCRIBED_FIELDS`: a comma-separated list of webhook fields; the Messenger set when unset. */
export function subscribedFieldsEnv() {
  return z.preprocess(
    (value) => (value === "" ? undefined : value),
    z
      .string()
      .default(DEFAULT_SUBSCRIBED_FIELDS.join(","))
      .transform((v) => [...new Set(v.split(",").map((s) => s.trim()))].filter(Boolean))
      .pipe(
        z.array(z.string().regex(/^[a-z_]+$/, "each field is a webhook field name like messages")).min(1),
      ),
  );
}

/** Which of `desired` are absent from `subscribed` (order of `desired`). */
export function missingFields(desired: readonly string[], subscribed: readonly string[]): string[] {
  const present = new Set(subscribed);
  return desired.filter((field) => !present.has(field));
}
