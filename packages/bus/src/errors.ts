/**
 * How a handler tells the consumer what went wrong. The class decides: retry later, dead-letter now,
 * or (any other error) treat as transient and redeliver with backoff.
 */
export class PermanentError extends Error {
  constructor(
    readonly reason: string,
    options?: ErrorOptions,
  ) {
    super(reason, options);
    this.name = "PermanentError";
  }
}

/** Try again after `delayMs` (a lock held elsewhere, a rate limit); dead-lettered once attempts run out. */
export class RetryLaterError extends Error {
  constructor(
    readonly reason: string,
    readonly delayMs: number,
    options?: ErrorOptions,
  ) {
    super(reason, options);
    this.name = "RetryLaterError";
  }
}
