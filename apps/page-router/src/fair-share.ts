import { type Bus, type JsMsg, publishJson, receivedAtOf } from "@switchboard/bus";
import { type MessagingEvent, PSID_FLOOD_FLAGGED, type PsidFloodFlaggedEvent } from "@switchboard/contracts";
import type { Logger } from "@switchboard/observability";
import { createActivePages, createPageQuota, createPsidFloodDetector } from "@switchboard/page-quota";
import type { Redis } from "ioredis";
import type { PageRouterMetrics } from "./metrics";

export interface FairShareSettings {
  /** Messages per second each page is routed at while other pages wait; alone, a page is not shaped. */
  ratePerSecond: number;
  burst: number;
  overrides: ReadonlyMap<string, number>;
  psidFloodThreshold: number;
  psidFloodWindowMs: number;
  /** Longest an entry is held back for its page's share (from the ingress receiving it); then it goes on. */
  maxDelayMs: number;
}

/** A page with an entry within this window is waiting for the router: the others then keep to their share. */
const ACTIVE_WINDOW_MS = 1000;
/** How long a replica trusts its last look at the active pages. */
const ACTIVE_CACHE_MS = 250;

/** What the fair share decided for an entry taken from the shared consumer. */
export type Admission =
  /** Routed now; `shared`: other pages were waiting, so its further messages take slots too. */
  | { overflow: false; shared: boolean }
  /** Over its share while others wait: moved to its page's overflow, routed from there. */
  | { overflow: true };

/**
 * Fair per-page processing, work-conserving: a page alone is routed at full speed; while other pages
 * wait (any other page active within the last second, seen by every replica through Redis), each page
 * gets its share (GCRA in Redis at its rate, PAGE_RATE_OVERRIDES as weights). Meta's deliveries are
 * never refused (a refusal makes Meta retry and in the end disable the app's webhooks), so the excess is
 * moved to the page's overflow (see overflow.ts), off the shared consumer, never dropped. Each entry is
 * counted once: not again on a redelivery, nor when handled again after an outage. A person flooding a
 * page is flagged once per window for abuse review. Without Redis entries pass unshaped: shaping must
 * never stop the pipeline.
 */
export function createFairShare(deps: {
  bus: Bus;
  redis: Redis;
  keyPrefix: string;
  settings: FairShareSettings;
  metrics: PageRouterMetrics;
  log: Logger;
}) {
  const { bus, redis, keyPrefix, settings, metrics, log } = deps;
  const quota = createPageQuota({
    redis,
    keyPrefix,
    ratePerSecond: settings.ratePerSecond,
    burst: settings.burst,
    overrides: settings.overrides,
  });
  const activePages = createActivePages({
    redis,
    keyPrefix,
    windowMs: ACTIVE_WINDOW_MS,
    cacheMs: ACTIVE_CACHE_MS,
  });
  const floods = createPsidFloodDetector({
    redis,
    keyPrefix,
    threshold: settings.psidFloodThreshold,
    windowMs: settings.psidFloodWindowMs,
  });
  const unavailable = (pageId: string, error: unknown) =>
    log.warn({ pageId, err: (error as Error).message }, "fair share unavailable, routing without it");

  /** Once per entry: its first delivery by its consumer, and only once if handled again in-process. */
  const firstHandling = (seen: WeakSet<JsMsg>, msg: JsMsg) => {
    if (msg.info.deliveryCount > 1 || seen.has(msg)) return false;
    seen.add(msg);
    return true;
  };
  const admitted = new WeakSet<JsMsg>();
  const accounted = new WeakSet<JsMsg>();
  const shaped = new WeakSet<JsMsg>();

  const flag = async (pageId: string, psid: string) => {
    metrics.psidFloods.inc({ page_id: pageId });
    log.warn(
      { pageId, psid, threshold: settings.psidFloodThreshold },
      "person flooding a page, flagged for review",
    );
    const event: PsidFloodFlaggedEvent = {
      type: PSID_FLOOD_FLAGGED,
      pageId,
      psid,
      threshold: settings.psidFloodThreshold,
      windowMs: settings.psidFloodWindowMs,
      occurredAt: Date.now(),
    };
    const window = Math.floor(event.occurredAt / settings.psidFloodWindowMs);
    await publishJson(bus.js, bus.topology.subjects.domainEvent(PSID_FLOOD_FLAGGED, pageId), event, {
      msgId: `psid-flood:${pageId}:${psid}:${window}`,
    });
  };

  /** Time left before the bound on shaping delays; past it the entry goes on without waiting for its share. */
  const untilOverdue = (msg: JsMsg) => {
    const receivedAt = receivedAtOf(msg);
    return receivedAt + settings.maxDelayMs - Date.now();
  };

  return {
    activePages,
    quota,

    /**
     * First, for an entry of the shared consumer, before it is even decoded (a flood's excess must cost
     * little): the page is noted active; if another page is waiting too, the entry takes a slot of its
     * page's share, or, with none free (or entries of its page already waiting there), goes to the
     * page's overflow.
     */
    async admit(msg: JsMsg, pageId: string, overflowing = false): Promise<Admission> {
      if (!firstHandling(admitted, msg)) return { overflow: false, shared: false };
      try {
        await activePages.markActive(pageId);
        if (!(await activePages.othersActive(pageId))) return { overflow: false, shared: false };
        // Behind entries already waiting in the page's overflow: the drain hands out the page's slots in
        // order, so taking one here would let newer entries pass and older ones wait past the bound.
        if (overflowing) {
          metrics.entriesDelayed.inc({ page_id: pageId });
          return { overflow: true };
        }
        if ((await quota.take(pageId, 1)) > 0 || untilOverdue(msg) <= 0)
          return { overflow: false, shared: true };
      } catch (error) {
        unavailable(pageId, error);
        return { overflow: false, shared: false };
      }
      metrics.entriesDelayed.inc({ page_id: pageId });
      return { overflow: true };
    },

    /**
     * For an entry drained from its page's overflow: waits for a slot of the page's share while other
     * pages wait, at most until the entry is overdue (`maxDelayMs` after the ingress received it). Resolves
     * to whether the share applied (then the entry's further messages take slots too). Stops waiting when
     * `stopping` aborts.
     */
    async awaitShare(msg: JsMsg, pageId: string, stopping?: AbortSignal): Promise<boolean> {
      if (!firstHandling(admitted, msg)) return shaped.has(msg);
      try {
        for (;;) {
          // Shutting down waits for handlers in flight: the few waiting go on now rather than hold it.
          if (stopping?.aborted) return false;
          if (!(await activePages.othersActive(pageId))) return false;
          if ((await quota.take(pageId, 1)) > 0) break;
          const left = untilOverdue(msg);
          if (left <= 0) {
            metrics.overflowOverdue.inc({ page_id: pageId });
            break;
          }
          // About one slot of the page's rate, at most 20 and at least 4 looks a second (contention ends).
          const slotMs = Math.min(250, Math.max(50, 1000 / quota.rateOf(pageId)));
          await new Promise((r) => setTimeout(r, Math.min(slotMs, left)));
        }
      } catch (error) {
        unavailable(pageId, error);
        return false;
      }
      shaped.add(msg);
      return true;
    },

    /**
     * Then, once per entry being routed: under contention its messages beyond the first take slots too;
     * people flooding the page are flagged.
     */
    async account(msg: JsMsg, pageId: string, events: MessagingEvent[], shared: boolean) {
      if (!firstHandling(accounted, msg)) return;
      const perPerson = new Map<string, number>();
      for (const event of events) {
        if (event.kind === "message") perPerson.set(event.psid, (perPerson.get(event.psid) ?? 0) + 1);
      }
      try {
        // Together: the observations of every entry routed in this tick leave in one Redis pipeline.
        const [, flooded] = await Promise.all([
          shared && events.length > 1 ? quota.reserve(pageId, events.length - 1) : undefined,
          Promise.all([...perPerson].map(([psid, count]) => floods.observe(pageId, psid, count))),
        ]);
        const people = [...perPerson.keys()];
        for (const [i, crossed] of flooded.entries()) if (crossed) await flag(pageId, people[i]!);
      } catch (error) {
        unavailable(pageId, error);
      }
    },
  };
}
export type FairShare = ReturnType<typeof createFairShare>;
