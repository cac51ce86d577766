import type { GraphUsage } from "./usage";

/**
 * What went wrong, in the terms a caller decides on. Classified from Meta's error body, see
 * https://developers.facebook.com/docs/graph-api/guides/error-handling and
 * https://developers.facebook.com/docs/messenger-platform/error-codes
 */
export type GraphErrorKind =
  | "invalid_token"
  | "permission"
  | "rate_limit"
  | "transient"
  | "user_unavailable"
  | "outside_window"
  | "bad_request"
  | "unknown";

export interface GraphErrorDetails {
  message: string;
  endpoint: string;
  status: number;
  code?: number;
  subcode?: number;
  type?: string;
  fbtraceId?: string;
  usage?: GraphUsage;
  cause?: unknown;
}

/** Any failed Graph API call. Never carries the access token or the appsecret_proof. */
export abstract class GraphApiError extends Error {
  abstract readonly kind: GraphErrorKind;
  /** Whether the same call can succeed later with nothing changed (the client itself retries only transient errors). */
  abstract readonly retryable: boolean;
  readonly endpoint: string;
  readonly status: number;
  readonly code?: number;
  readonly subcode?: number;
  readonly type?: string;
  readonly fbtraceId?: string;
  readonly usage: GraphUsage;

  constructor(details: GraphErrorDetails) {
    super(details.message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.endpoint = details.endpoint;
    this.status = details.status;
    this.code = details.code;
    this.subcode = details.subcode;
    this.type = details.type;
    this.fbtraceId = details.fbtraceId;
    this.usage = details.usage ?? {};
  }

  toJSON() {
    return {
      name: this.name,
      kind: this.kind,
      message: this.message,
      endpoint: this.endpoint,
      status: this.status,
      code: this.code,
      subcode: this.subcode,
      type: this.type,
      fbtraceId: this.fbtraceId,
      retryable: this.retryable,
      usage: this.usage,
    };
  }
}

/** 190 (and 102): the token expired, was revoked or never was valid. The page needs re-authorisation. */
export class InvalidTokenError extends GraphApiError {
  readonly kind = "invalid_token" as const;
  readonly retryable = false;
}

/** 3, 10, 200-299: the token lacks a permission or the app lacks a capability. */
export class PermissionError extends GraphApiError {
  readonly kind = "permission" as const;
  readonly retryable = false;
}

/** 4, 17, 32, 613, 341, 80001-80014: throttled. Back off; `retryAfterMs` when Meta says how long. */
export class RateLimitError extends GraphApiError {
  readonly kind = "rate_limit" as const;
  readonly retryable = true;
  get retryAfterMs(): number | undefined {
    const minutes = this.usage.estimatedTimeToRegainAccessMinutes;
    return minutes === undefined || minutes <= 0 ? undefined : minutes * 60_000;
  }
}

/**
 * 1, 2, 1200, HTTP 5xx, network errors and timeouts. `requestMayHaveApplied` is true when Meta may have
 * acted on the request anyway (a timeout, a dropped connection, a 5xx without a Graph error body): retrying
 * a send then risks a duplicate message.
 */
export class TransientGraphError extends GraphApiError {
  readonly kind = "transient" as const;
  readonly retryable = true;
  readonly requestMayHaveApplied: boolean;
  constructor(details: GraphErrorDetails & { requestMayHaveApplied: boolean }) {
    super(details);
    this.requestMayHaveApplied = details.requestMayHaveApplied;
  }
}

/** 551, subcode 1545041, 100/2018001: this person cannot be reached (blocked the page, deactivated...). */
export class UserUnavailableError extends GraphApiError {
  readonly kind = "user_unavailable" as const;
  readonly retryable = false;
}

/** 10 with 2018278/2018108/2018065: a standard message outside the 24-hour window. */
export class OutsideWindowError extends GraphApiError {
  readonly kind = "outside_window" as const;
  readonly retryable = false;
}

/** 100: a bad parameter (our bug, or an object that does not exist or is not visible to this token). */
export class BadRequestError extends GraphApiError {
  readonly kind = "bad_request" as const;
  readonly retryable = false;
}

export class UnknownGraphError extends GraphApiError {
  readonly kind = "unknown" as const;
  readonly retryable = false;
}

const OUTSIDE_WINDOW_SUBCODES = new Set([2018278, 2018108, 2018065]);
const USER_UNAVAILABLE_SUBCODES = new Set([1545041]);
const RATE_LIMIT_CODES = new Set([4, 17, 32, 341, 613]);
const TRANSIENT_CODES = new Set([1, 2, 1200]);

export interface GraphErrorFacts {
  status: number;
  code?: number;
  subcode?: number;
  isTransient?: boolean;
}

/** Maps Meta's (code, subcode, HTTP status) to a kind. Order matters: the most specific reading wins. */
export function classifyGraphError({ status, code, subcode, isTransient }: GraphErrorFacts): GraphErrorKind {
  if (code === undefined) {
    if (status === 429) return "rate_limit";
    return status >= 500 ? "transient" : "unknown";
  }
  if (code === 190 || code === 102) return "invalid_token";
  if (code === 551 || (subcode !== undefined && USER_UNAVAILABLE_SUBCODES.has(subcode)))
    return "user_unavailable";
  if (code === 100 && subcode === 2018001) return "user_unavailable";
  if (code === 10 && subcode !== undefined && OUTSIDE_WINDOW_SUBCODES.has(subcode)) return "outside_window";
  // 80001-80014: Business Use Case limits (Pages, Messenger, ...) that apply to page tokens.
  if (RATE_LIMIT_CODES.has(code) || (code >= 80001 && code <= 80014)) return "rate_limit";
  if (TRANSIENT_CODES.has(code)) return "transient";
  if (code === 3 || code === 10 || (code >= 200 && code <= 299)) return "permission";
  if (code === 100) return "bad_request";
  if (isTransient === true || status >= 500) return "transient";
  return "unknown";
}

export function createGraphError(
  kind: GraphErrorKind,
  details: GraphErrorDetails & { requestMayHaveApplied?: boolean },
): GraphApiError {
  switch (kind) {
    case "invalid_token":
      return new InvalidTokenError(details);
    case "permission":
      return new PermissionError(details);
    case "rate_limit":
      return new RateLimitError(details);
    case "transient":
      return new TransientGraphError({
        ...details,
        requestMayHaveApplied: details.requestMayHaveApplied ?? false,
      });
    case "user_unavailable":
      return new UserUnavailableError(details);
    case "outside_window":
      return new OutsideWindowError(details);
    case "bad_request":
      return new BadRequestError(details);
    default:
      return new UnknownGraphError(details);
  }
}
