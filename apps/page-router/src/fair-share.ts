import { type Bus, type JsMsg, publishJson, RetryLaterError } from "@switchboard/bus";
import { type MessagingEvent, PSID_FLOOD_FLAGGED, type PsidFloodFlaggedEvent } from "@switchboard/contracts";
import type { Logger } from "@switchboard/observability";
import { createPageQuota, createPsidFloodDetector } from "@switchboard/page-quota";
import type { Redis } from "ioredis";
import type { PageRouterMetrics } from "./metrics";

export interface FairShareSettings {
  /** Messages per second each page is routed at; beyond it (and its burst) its entries are delayed. */
  ratePerSecond: number;
  burst: number;
  overrides: ReadonlyMap<string, number>;
  psidFloodThreshold: number;
  psidFloodWindowMs: number;
}

/** A page sent more than its share: the entry comes back after its slot instead of being dropped. */
export class PageOverRateError extends RetryLaterError {
  constructor(delayMs: number) {
    super("page over its message rate", delayMs);
    this.name = "PageOverRateError";
  }
}

/**
 * Fair per-page processing. Meta's deliveries are never refused (a refusal makes Meta retry and in the end
 * disable the app's webhooks), so a page over its rate is shaped, not shed: its entry is handed back with
 * the delay to its reserved slot and routed then, while other pages' entries pass. A person flooding a
 * page is flagged once per window for abuse review; their messages are still stored. Without Redis
 * entries pass unshaped: shaping must never stop the pipeline.
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
  const floods = createPsidFloodDetector({
    redis,
    keyPrefix,
    threshold: settings.psidFloodThreshold,
    windowMs: settings.psidFloodWindowMs,
  });
  const unavailable = (pageId: string, error: unknown) =>
    log.warn({ pageId, err: (error as Error).message }, "fair share unavailable, routing without it");

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

  return {
    /**
     * First, before the entry is even decoded (a flood's excess must cost little): on its first delivery
     * an entry reserves a slot in its page's schedule and is handed back when the slot is later. A
     * redelivery already has its slot.
     */
    async admit(msg: JsMsg, pageId: string) {
      if (msg.info.deliveryCount > 1) return;
      let delayMs = 0;
      try {
        delayMs = await quota.reserve(pageId);
      } catch (error) {
        return unavailable(pageId, error);
      }
      if (delayMs > 0) {
        metrics.entriesDelayed.inc({ page_id: pageId });
        throw new PageOverRateError(delayMs);
      }
    },

    /** Then, for an entry being routed: its messages beyond the first take slots too; floods are flagged. */
    async account(pageId: string, events: MessagingEvent[]) {
      const perPerson = new Map<string, number>();
      for (const event of events) {
        if (event.kind === "message") perPerson.set(event.psid, (perPerson.get(event.psid) ?? 0) + 1);
      }
      try {
        if (events.length > 1) await quota.reserve(pageId, events.length - 1);
        for (const [psid, count] of perPerson) {
          if (await floods.observe(pageId, psid, count)) await flag(pageId, psid);
        }
      } catch (error) {
        unavailable(pageId, error);
      }
    },
  };
}
