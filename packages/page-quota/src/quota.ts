import type { Redis } from "ioredis";
import { z } from "zod";
import { coalescePerTick } from "./coalesce";

/**
 * Generic cell rate algorithm over Redis, shared by every replica: each call reserves `count` slots at
 * the page's rate and answers how long to wait until the first one (0 = within the rate or the burst).
 * The clock is Redis's own (TIME), so replicas with skewed clocks agree. A reservation is never refused:
 * the caller delays, it does not drop (a refused Meta delivery would be retried, then unsubscribed).
 *
 * Both scripts take many pages at once (KEYS[i] with ARGV[3i-2..3i]): the calls of one tick, for however
 * many pages, are one script call (see `coalescePerTick`), applied in call order.
 */
const RESERVE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local waits = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[i * 3 - 2])
  local tolerance = tonumber(ARGV[i * 3 - 1])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local wait = tat - now - tolerance
  if wait < 0 then wait = 0 end
  local nextTat = tat + interval
  redis.call('SET', key, tostring(nextTat), 'PX', math.ceil(nextTat - now) + 1000)
  waits[i] = math.ceil(wait)
end
return waits
`;

/**
 * Takes up to `want` slots that are free now (within the rate and the burst) and answers how many; a
 * refusal leaves the schedule as it was, so a page waiting for its share builds no debt.
 */
const TAKE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local granted = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[i * 3 - 2])
  local tolerance = tonumber(ARGV[i * 3 - 1])
  local want = tonumber(ARGV[i * 3])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local free = math.floor((now + tolerance - tat) / interval + 0.000001) + 1
  if free < 0 then free = 0 end
  local g = math.min(want, free)
  if g > 0 then
    local nextTat = tat + interval * g
    redis.call('SET', key, tostring(nextTat), 'PX', math.ceil(nextTat - now) + 1000)
  end
  granted[i] = g
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
  sbPageQuotaReserveMany(keyCount: number, ...keysThenArgs: string[]): Promise<number[]>;
  sbPageQuotaTakeMany(keyCount: number, ...keysThenArgs: string[]): Promise<number[]>;
}

interface Call {
  key: string;
  interval: number;
  tolerance: number;
  count: number;
}

export function createPageQuota(options: PageQuotaOptions): PageQuota {
  const rateOf = (pageId: string) => options.overrides?.get(pageId) ?? options.ratePerSecond;
  const intervalOf = (pageId: string) => 1000 / rateOf(pageId);
  const keyOf = (pageId: string) => `${options.keyPrefix}page-quota:${pageId}`;
  options.redis.defineCommand("sbPageQuotaReserveMany", { lua: RESERVE });
  options.redis.defineCommand("sbPageQuotaTakeMany", { lua: TAKE });
  const redis = options.redis as unknown as QuotaCommands;
  const argsOf = (calls: Call[]) => [
    ...calls.map((c) => c.key),
    ...calls.flatMap((c) => [String(c.interval), String(c.tolerance), String(c.count)]),
  ];
  const reserveMany = coalescePerTick<Call, number>(async (calls) =>
    (await redis.sbPageQuotaReserveMany(calls.length, ...argsOf(calls))).map(Number),
  );
  const takeMany = coalescePerTick<Call, number>(async (calls) =>
    (await redis.sbPageQuotaTakeMany(calls.length, ...argsOf(calls))).map(Number),
  );
  const callOf = (pageId: string, count: number, intervalTimes: number): Call => {
    const intervalMs = intervalOf(pageId);
    return {
      key: keyOf(pageId),
      interval: intervalMs * intervalTimes,
      tolerance: intervalMs * options.burst,
      count,
    };
  };
  return {
    rateOf,
    reserve(pageId, count = 1) {
      return reserveMany(callOf(pageId, count, count));
    },
    async take(pageId, count) {
      if (count <= 0) return 0;
      return takeMany(callOf(pageId, count, 1));
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
