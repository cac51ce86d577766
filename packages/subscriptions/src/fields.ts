import { z } from "zod";

/**
 * The webhook fields each page is subscribed to by default: Meta's recommended set for a Page app, every
 * Messenger event Switchboard applies (https://developers.facebook.com/docs/messenger-platform/webhooks#event-notifications):
 * conversation routing (`messaging_handovers`, `standby`: what arrives while the Page inbox has the thread),
 * edits, policy enforcement and account linking. Never `response_feedback`: subscribing it shows customers
 * a feedback prompt. The reconcile loop adds fields new here to pages subscribed before.
 */
export const DEFAULT_SUBSCRIBED_FIELDS = [
  "messages",
  "messaging_postbacks",
  "message_deliveries",
  "message_reads",
  "message_echoes",
  "message_reactions",
  "message_edits",
  "messaging_referrals",
  "messaging_optins",
  "messaging_handovers",
  "standby",
  "messaging_policy_enforcement",
  "messaging_account_linking",
] as const;

/**
 * The fields each Instagram account is subscribed to (the Instagram API's names: `messaging_seen`, and
 * `messaging_referral` in the singular). Instagram has no echoes field: echoes come in `messages`.
 * https://developers.facebook.com/docs/instagram-platform/webhooks
 */
export const INSTAGRAM_DEFAULT_SUBSCRIBED_FIELDS = [
  "messages",
  "message_reactions",
  "messaging_seen",
  "messaging_postbacks",
  "messaging_referral",
] as const;

/**
 * `SUBSCRIBED_FIELDS` (Pages) or `INSTAGRAM_SUBSCRIBED_FIELDS`: a comma-separated list of webhook fields;
 * the platform's default set when unset.
 */
export function subscribedFieldsEnv(defaults: readonly string[] = DEFAULT_SUBSCRIBED_FIELDS) {
  return z.preprocess(
    (value) => (value === "" ? undefined : value),
    z
      .string()
      .default(defaults.join(","))
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
