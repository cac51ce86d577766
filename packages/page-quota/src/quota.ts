import type { Redis } from "ioredis";
import { z } from "zod";

/**
 * Generic cell rate algorithm over Redis, shared by every replica: each call reserves `count` slots at
 * the page's rate and answers how long to wait until the first one (0 = within the rate or the burst).
 * The clock is Redis's own (TIME), so replicas with skewed clocks agree. A reservation is never refused:
 * the caller delays, it does not drop (a refused Meta delivery would be retried, then unsubscribed).
 */
const RESERVE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now - tolerance
if wait < 0 then wait = 0 end
local nextTat = tat + interval
redis.call('SET', KEYS[1], tostring(nextTat), 'PX', math.ceil(nextTat - now) + 1000)
return wait
`;

/**
 * Takes up to ARGV[3] slots that are free now (within the rate and the burst) and answers how many; a
 * refusal leaves the schedule as it was, so a page waiting for its share builds no debt.
 */
const TAKE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local free = math.floor((now + tolerance - tat) / interval + 0.000001) + 1
if free < 0 then free = 0 end
local granted = math.min(want, free)
if granted > 0 then
  local nextTat = tat + interval * granted
  redis.call('SET', KEYS[1], tostring(nextTat), 'PX', math.ceil(nextTat - now) + 1000)
end
return granted
`;

export interface PageQuotaOptions {
  redis: Redis;
  keyPrefix: string;
  /** Messages per second a page may have processed without delay. */
  ratePerSecond: number;
  /** Messages a page may send at once above its rate before delays start. */
  burst: number;
  /** Per-page rates (a large page with an agreement, a known noisy one). */
  overrides?: ReadonlyMap<string, number>;
}

export interface PageQuota {
  /** Reserves `count` messages for the page; resolves to the delay in ms before they should be processed. */
  reserve(pageId: string, count?: number): Promise<number>;
  /** Takes up to `count` slots free now; resolves to how many (0 = the page is at its share). */
  take(pageId: string, count: number): Promise<number>;
  rateOf(pageId: string): number;
}

/** The scripts as commands: ioredis sends `EVALSHA` (the script itself only once per node), not the body each time. */
interface QuotaCommands {
  sbPageQuotaReserve(key: string, interval: string, tolerance: string): Promise<number>;
  sbPageQuotaTake(key: string, interval: string, tolerance: string, want: string): Promise<number>;
}

export function createPageQuota(options: PageQuotaOptions): PageQuota {
  const rateOf = (pageId: string) => options.overrides?.get(pageId) ?? options.ratePerSecond;
  const intervalOf = (pageId: string) => 1000 / rateOf(pageId);
  const keyOf = (pageId: string) => `${options.keyPrefix}page-quota:${pageId}`;
  options.redis.defineCommand("sbPageQuotaReserve", { numberOfKeys: 1, lua: RESERVE });
  options.redis.defineCommand("sbPageQuotaTake", { numberOfKeys: 1, lua: TAKE });
  const redis = options.redis as unknown as QuotaCommands;
  return {
    rateOf,
    async reserve(pageId, count = 1) {
      const intervalMs = intervalOf(pageId);
      const wait = await redis.sbPageQuotaReserve(
        keyOf(pageId),
        String(intervalMs * count),
        String(intervalMs * options.burst),
      );
      return Math.ceil(Number(wait));
    },
    async take(pageId, count) {
      if (count <= 0) return 0;
      const intervalMs = intervalOf(pageId);
      const granted = await redis.sbPageQuotaTake(
        keyOf(pageId),
        String(intervalMs),
        String(intervalMs * options.burst),
        String(count),
      );
      return Number(granted);
    },
  };
}

/** `PAGE_RATE_OVERRIDES`: `<page id>:<messages per second>` pairs, comma-separated. */
export function pageRateOverridesEnv() {
  return z.preprocess(
    (v) => (v === undefined ? "" : v),
    z
      .string()
      .regex(/^(\d+:\d+(\.\d+)?(,\d+:\d+(\.\d+)?)*)?$/, "comma-separated <page id>:<messages per second>")
      .transform(
        (v) =>
          new Map(
            v
              .split(",")
              .filter(Boolean)
              .map((pair) => {
                const [pageId, rate] = pair.split(":");
                return [pageId!, Number(rate)] as const;
              }),
          ),
      ),
  );
}
