import { RetryLaterError } from "@switchboard/bus";
import { GraphApiError, RateLimitError } from "@switchboard/graph-api";

/**
 * What a failed Send API call means for the message: failed for good with a reason a person can act on,
 * or worth another try later. Meta's codes: https://developers.facebook.com/docs/messenger-platform/error-codes
 */
export type SendFailure =
  | { outcome: "failed"; reason: string; reauthorize: boolean }
  | { outcome: "retry"; error: Error };

/** Meta's own wording stays in the reason (it never carries the token: the client redacts it). */
export function explainSendFailure(error: unknown): SendFailure {
  if (!(error instanceof GraphApiError)) return { outcome: "retry", error: error as Error };
  const meta = `(Meta: ${error.message})`;
  switch (error.kind) {
    case "outside_window":
      return failed(
        "outside the 24-hour messaging window: the person last wrote to the page more than 24 hours ago; " +
          `reply with messaging_type MESSAGE_TAG and a tag such as HUMAN_AGENT ${meta}`,
      );
    case "user_unavailable":
      return failed(
        "the person cannot receive messages from this page right now (they blocked it, or deactivated " +
          `or deleted their account) ${meta}`,
      );
    case "invalid_token":
      return failed(
        "the page's access token was revoked or has expired: the page needs re-authorisation " +
          `(pnpm sb pages connect) ${meta}`,
        true,
      );
    case "permission":
      return failed(`the page's token lacks a permission this message needs ${meta}`);
    case "bad_request":
    case "unknown":
      return failed(`Meta refused the message ${meta}`);
    case "rate_limit": {
      const retryAfterMs = error instanceof RateLimitError ? error.retryAfterMs : undefined;
      return {
        outcome: "retry",
        error: new RetryLaterError(`Meta rate limit ${meta}`, Math.min(retryAfterMs ?? 30_000, 300_000), {
          cause: error,
        }),
      };
    }
    case "transient":
      // Known not to have gone out (the caller handles a call whose outcome is unknown before this).
      return { outcome: "retry", error };
  }
}

function failed(reason: string, reauthorize = false): SendFailure {
  return { outcome: "failed", reason, reauthorize };
}
