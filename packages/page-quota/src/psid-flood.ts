import type { Redis } from "ioredis";

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

export function createPsidFloodDetector(options: PsidFloodOptions): PsidFloodDetector {
  return {
    async observe(pageId, psid, count = 1) {
      const window = Math.floor(Date.now() / options.windowMs);
      const key = `${options.keyPrefix}psid-flood:${pageId}:${psid}:${window}`;
      const [[, total]] = (await options.redis
        .multi()
        .incrby(key, count)
        .pexpire(key, options.windowMs * 2)
        .exec()) as [[Error | null, number], [Error | null, number]];
      return total >= options.threshold && total - count < options.threshold;
    },
  };
}
