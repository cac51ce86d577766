import type { Bus } from "@switchboard/bus";
import { PageLifecycleEvent, type PageStatus, type Platform } from "@switchboard/contracts";
import type { Db } from "@switchboard/db";
import type { Logger } from "@switchboard/observability";

/** What routing needs to know about a PageConnection. The token stays encrypted until a Graph call needs it. */
export interface RoutablePage {
  pageId: string;
  companyId: string;
  platform: Platform;
  status: PageStatus;
  pageAccessTokenEnc: string;
}

export interface PageDirectory {
  /** The page for `entry.id`, or null when no PageConnection has that id. */
  resolve(pageId: string): Promise<RoutablePage | null>;
  /** Forgets one page (or every page): the next entry reads the database. */
  invalidate(pageId?: string): void;
}

interface CacheEntry {
  page: RoutablePage | null;
  expiresAt: number;
}

/**
 * An in-process cache of PageConnections. Lifecycle events invalidate it at once (see
 * `followPageLifecycle`); the TTL only bounds the damage of an event this replica missed.
 * A generation per page stops a read that raced an invalidation from caching the old row.
 */
const MAX_CACHED_PAGES = 20_000;

export function createPageDirectory({ db, ttlMs }: { db: Db; ttlMs: number }): PageDirectory {
  const cache = new Map<string, CacheEntry>();
  const generations = new Map<string, number>();
  let epoch = 0;
  const generationOf = (pageId: string) => `${epoch}:${generations.get(pageId) ?? 0}`;

  return {
    async resolve(pageId) {
      const cached = cache.get(pageId);
      if (cached && cached.expiresAt > Date.now()) return cached.page;
      const before = generationOf(pageId);
      const row = await db.pageConnection.findUnique({
        where: { pageId },
        select: { pageId: true, companyId: true, platform: true, status: true, pageAccessTokenEnc: true },
      });
      if (generationOf(pageId) === before) {
        // Bounded whatever the number of pages: the oldest entry goes first (Map keeps insertion order).
        cache.delete(pageId);
        if (cache.size >= MAX_CACHED_PAGES) cache.delete(cache.keys().next().value as string);
        cache.set(pageId, { page: row, expiresAt: Date.now() + ttlMs });
      }
      return row;
    },
    invalidate(pageId) {
      if (pageId === undefined) {
        epoch++;
        cache.clear();
        return;
      }
      generations.set(pageId, (generations.get(pageId) ?? 0) + 1);
      cache.delete(pageId);
    },
  };
}

/**
 * Every replica must see every lifecycle event, so this is a plain (core NATS) subscription per process,
 * not a share of a durable consumer. Events published while this process was disconnected are missed:
 * on reconnect the whole cache is dropped instead.
 */
export function followPageLifecycle(
  { bus, log }: { bus: Bus; log: Logger },
  handlers: { onEvent: (event: PageLifecycleEvent) => void | Promise<void>; onReconnect: () => void },
): { stop(): void } {
  const subscription = bus.nc.subscribe(bus.topology.subjects.pageLifecycleAll, {
    callback: (error, msg) => {
      if (error) {
        log.warn({ err: error }, "page lifecycle subscription error");
        return;
      }
      const parsed = PageLifecycleEvent.safeParse(safeJson(msg.data));
      if (!parsed.success) {
        log.warn({ subject: msg.subject }, "ignoring malformed page lifecycle event");
        return;
      }
      Promise.resolve(handlers.onEvent(parsed.data)).catch((err: unknown) =>
        log.error(
          { err, pageId: parsed.data.pageId, type: parsed.data.type },
          "page lifecycle handler failed",
        ),
      );
    },
  });
  let stopped = false;
  void (async () => {
    for await (const status of bus.nc.status()) {
      if (stopped) break;
      if (status.type === "reconnect") handlers.onReconnect();
    }
  })();
  return {
    stop() {
      stopped = true;
      subscription.unsubscribe();
    },
  };
}

function safeJson(data: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(data));
  } catch {
    return undefined;
  }
}
