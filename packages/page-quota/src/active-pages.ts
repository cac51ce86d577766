import type { Redis } from "ioredis";
import { coalescePerTick } from "./coalesce";

export interface ActivePagesOptions {
  redis: Redis;
  keyPrefix: string;
  /** A page that had an entry within this window is waiting for the router's capacity. */
  windowMs: number;
  /** How long a replica trusts its last look (and skips marking a page it marked just now). */
  cacheMs: number;
}

export interface ActivePages {
  /** Notes that the page has entries waiting (one Redis write per page per `cacheMs` at most). */
  markActive(pageId: string): Promise<void>;
  /** True when a page other than this one was active within the window: then shares apply. */
  othersActive(pageId: string): Promise<boolean>;
}

/**
 * Contention for the fair share, shared by every replica: a sorted set of pages scored by when each last
 * had an entry. A page alone is never shaped; as soon as another page is active, each gets its share.
 */
export function createActivePages(options: ActivePagesOptions): ActivePages {
  const { redis, windowMs, cacheMs } = options;
  const key = `${options.keyPrefix}fair-share:active-pages`;
  const markedAt = new Map<string, number>();
  let snapshot: { at: number; pages: Promise<string[]> } | undefined;
  // Every page marked in one tick in one ZADD: with thousands of pages, each is marked once per
  // `cacheMs`, and a burst of them costs one round trip, not one transaction each.
  const mark = coalescePerTick<string, void>(async (pageIds) => {
    const now = Date.now();
    const members = [...new Set(pageIds)].flatMap((pageId) => [now, pageId]);
    await redis
      .multi()
      .zadd(key, ...members)
      .zremrangebyscore(key, "-inf", now - windowMs)
      .pexpire(key, windowMs * 10)
      .exec();
    return pageIds.map(() => undefined);
  });

  return {
    async markActive(pageId) {
      const now = Date.now();
      if (now - (markedAt.get(pageId) ?? 0) < cacheMs) return;
      markedAt.set(pageId, now);
      if (markedAt.size > 10_000) markedAt.clear();
      await mark(pageId);
    },
    async othersActive(pageId) {
      const now = Date.now();
      if (!snapshot || now - snapshot.at >= cacheMs) {
        // Two members are enough to answer for any page: with two, every page has another beside it.
        const pages = redis.zrangebyscore(key, now - windowMs, "+inf", "LIMIT", 0, 2);
        snapshot = { at: now, pages };
        pages.catch(() => {
          if (snapshot?.pages === pages) snapshot = undefined;
        });
      }
      const pages = await snapshot.pages;
      return pages.some((page) => page !== pageId);
    },
  };
}
