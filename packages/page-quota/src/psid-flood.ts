import type { Redis } from "ioredis";
import { coalescePerTick } from "./coalesce";

export interface PsidFloodOptions {
  redis: Redis;
  keyPrefix: string;
  /** Messages from one person to one page within the window that make it a flood. */
  threshold: number;
  windowMs: number;
}

export interface PsidFloodDetector {
  /**
   * Counts `count` messages from the person; true exactly once per window, on the message that crosses
   * the threshold, so a flood is flagged for abuse review once rather than on every message.
   */
  observe(pageId: string, psid: string, count?: number): Promise<boolean>;
}

interface Observation {
  key: string;
  count: number;
}

export function createPsidFloodDetector(options: PsidFloodOptions): PsidFloodDetector {
  const { redis, threshold, windowMs } = options;
  // The observations of one tick in one pipeline: a counter per person (INCRBY is atomic, so across
  // replicas exactly one increment crosses the threshold) and its expiry.
  const count = coalescePerTick<Observation, boolean>(async (observations) => {
    const totals = new Map<string, number>();
    for (const { key, count } of observations) totals.set(key, (totals.get(key) ?? 0) + count);
    const pipeline = redis.pipeline();
    for (const [key, total] of totals) pipeline.incrby(key, total).pexpire(key, windowMs * 2);
    const replies = (await pipeline.exec()) ?? [];
    // The counter after this tick's increments, walked back to where this tick started.
    const running = new Map<string, number>();
    [...totals.entries()].forEach(([key, total], i) => {
      const [error, after] = replies[i * 2] ?? [new Error("no reply")];
      if (error) throw error;
      running.set(key, Number(after) - total);
    });
    return observations.map(({ key, count }) => {
      const before = running.get(key)!;
      running.set(key, before + count);
      return before < threshold && before + count >= threshold;
    });
  });
  return {
    observe(pageId, psid, n = 1) {
      const window = Math.floor(Date.now() / windowMs);
      return count({ key: `${options.keyPrefix}psid-flood:${pageId}:${psid}:${window}`, count: n });
    },
  };
}
