import { GraphApiError, RateLimitError } from "./errors";

/**
 * What a caller does about a failed Graph call — the one policy the send worker, the profile lookup and
 * the subscriptions apply, each in its own terms:
 * - `reauthorize`: the page's token is dead (expired, revoked). Mark the page `reauthorization_required`
 *   and stop calling with that token; only a new token (an operator) fixes it.
 * - `back_off`: Meta throttles this page or app. Make no call for it for `retryAfterMs` (Meta's estimate
 *   when it gives one), then try again; never counted as the call's failure.
 * - `retry`: a passing failure (Meta unavailable, a timeout known not to have applied): the same call may
 *   succeed; the caller's own retry schedule applies.
 * - `give_up`: this call will not succeed as it is (the person cannot be reached, a missing permission, a
 *   bad request): record why, do not repeat it.
 */
export type GraphFailureAction =
  | { action: "reauthorize"; error: GraphApiError }
  | { action: "back_off"; retryAfterMs: number; error: GraphApiError }
  | { action: "retry"; error: GraphApiError }
  | { action: "give_up"; error: GraphApiError };

export interface GraphFailurePolicyOptions {
  /** Pause when Meta throttles without saying for how long (default 30 s). */
  defaultBackoffMs?: number;
  /** Longest pause, whatever Meta estimates (default 5 min): the caller looks again after it. */
  maxBackoffMs?: number;
}

/** The action for `error`; undefined when it is not a Graph answer (a bug, the database): not Meta's to decide. */
export function graphFailurePolicy(
  error: unknown,
  options: GraphFailurePolicyOptions = {},
): GraphFailureAction | undefined {
  if (!(error instanceof GraphApiError)) return undefined;
  switch (error.kind) {
    case "invalid_token":
      return { action: "reauthorize", error };
    case "rate_limit": {
      const estimate = error instanceof RateLimitError ? error.retryAfterMs : undefined;
      const retryAfterMs = Math.min(
        estimate ?? options.defaultBackoffMs ?? 30_000,
        options.maxBackoffMs ?? 300_000,
      );
      return { action: "back_off", retryAfterMs, error };
    }
    case "transient":
      return { action: "retry", error };
    case "permission":
    case "user_unavailable":
    case "outside_window":
    case "bad_request":
    case "unknown":
      return { action: "give_up", error };
  }
}
