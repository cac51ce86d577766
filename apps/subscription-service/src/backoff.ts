import type { ReconcileResult } from "@switchboard/subscriptions";
import type { Redis } from "ioredis";

export interface PageBackoffOptions {
  redis: Redis;
  keyPrefix: string;
  /** The first back-off step (the reconcile interval: a rate-limited page skips its next check). */
  baseMs: number;
  maxBackoffMs: number;
}

/**
 * Per-page back-off after Meta rate-limits a page, shared by every replica and by both the periodic
 * checks and the lifecycle events, so a throttled page is left alone while the others go on.
 */
export function createPageBackoff({ redis, keyPrefix, baseMs, maxBackoffMs }: PageBackoffOptions) {
  const until = (pageId: string) => `${keyPrefix}subscriptions:backoff:${pageId}`;
  const streak = (pageId: string) => `${keyPrefix}subscriptions:rate-limits:${pageId}`;
  return {
    /** Milliseconds the page is still backed off (0 when it may be called). */
    async remainingMs(pageId: string): Promise<number> {
      return Math.max(0, await redis.pttl(until(pageId)));
    },
    /** Records a call's outcome: a rate limit doubles the page's back-off (Meta's own estimate wins). */
    async record(result: ReconcileResult): Promise<number> {
      const { pageId, failure } = result;
      if (failure?.kind !== "rate_limit") {
        if (!failure) await redis.del(streak(pageId));
        return 0;
      }
      const count = await redis.incr(streak(pageId));
      await redis.pexpire(streak(pageId), maxBackoffMs * 2);
      const backoffMs = Math.max(Math.min(maxBackoffMs, baseMs * 2 ** count), failure.retryAfterMs ?? 0);
      await redis.set(until(pageId), String(count), "PX", backoffMs);
      return backoffMs;
    },
  };
}
export type PageBackoff = ReturnType<typeof createPageBackoff>;
