import { RetryLaterError } from "@switchboard/bus";
import { type GraphErrorKind, graphFailurePolicy } from "@switchboard/graph-api";

/**
 * What a failed Send API call means for the message: failed for good with a reason a person can act on,
 * or worth another try later. Meta's codes: https://developers.facebook.com/docs/messenger-platform/error-codes
 */
export type SendFailure =
  | { outcome: "failed"; reason: string; reauthorize: boolean }
  | { outcome: "retry"; error: Error };

/**
 * Meta's own wording stays in the reason (it never carries the token: the client redacts it). The action
 * comes from the one Graph-failure policy (`graphFailurePolicy`); this says what it means for a message.
 */
export function explainSendFailure(error: unknown): SendFailure {
  const policy = graphFailurePolicy(error);
  if (!policy) return { outcome: "retry", error: error as Error };
  const meta = `(Meta: ${policy.error.message})`;
  switch (policy.action) {
    case "reauthorize":
      return failed(
        "the page's access token was revoked or has expired: the page needs re-authorisation " +
          `(pnpm sb pages connect) ${meta}`,
        true,
      );
    case "back_off":
      return {
        outcome: "retry",
        error: new RetryLaterError(`Meta rate limit ${meta}`, policy.retryAfterMs, { cause: policy.error }),
      };
    case "retry":
      // Known not to have gone out (the caller handles a call whose outcome is unknown before this).
      return { outcome: "retry", error: policy.error };
    case "give_up":
      if (policy.error.code === 10 && policy.error.subcode === THREAD_OWNED_ELSEWHERE) {
        return failed(`${THREAD_OWNED_ELSEWHERE_REASON} ${meta}`);
      }
      return failed(`${GIVE_UP_REASONS[policy.error.kind] ?? "Meta refused the message"} ${meta}`);
  }
}

/** Conversation routing: code 10, subcode 2018300, "another app is controlling this thread now". */
const THREAD_OWNED_ELSEWHERE = 2018300;
export const THREAD_OWNED_ELSEWHERE_REASON =
  "another app controls this conversation (conversation routing: e.g. a person replying from the Meta " +
  "Business Suite inbox): reply from there, pass the thread back to this app, or wait until it is idle";

/** Why a message was given up, in words a person can act on, by Meta's error kind. */
const GIVE_UP_REASONS: Partial<Record<GraphErrorKind, string>> = {
  outside_window:
    "outside the 24-hour messaging window: the person last wrote to the page more than 24 hours ago; " +
    "reply with messaging_type MESSAGE_TAG and a tag such as HUMAN_AGENT",
  user_unavailable:
    "the person cannot receive messages from this page right now (they blocked it, or deactivated " +
    "or deleted their account)",
  permission: "the page's token lacks a permission this message needs",
};

function failed(reason: string, reauthorize = false): SendFailure {
  return { outcome: "failed", reason, reauthorize };
}
