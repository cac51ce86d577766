import type { ConsumerOptions } from "@switchboard/bus";
import { type Db, postgresAnswers } from "@switchboard/db";
import { type PingableRedis, redisReadiness } from "@switchboard/observability";

/** How long PostgreSQL or Redis may take to answer a probe before it counts as down. */
export const PROBE_TIMEOUT_MS = 1000;

/**
 * The consumers' `probeDependencies`: what no page's check can go without, PostgreSQL (pages, subscription
 * rows) and Redis (slot claims, back-offs). While one does not answer the consumers pause instead of
 * spending the events' attempts. Meta is not in it: a failing Graph call is that page's failure, recorded
 * and backed off, not an outage of the service.
 */
export function dependencyProbe(
  { db, redis }: { db: Db; redis: PingableRedis },
  timeoutMs = PROBE_TIMEOUT_MS,
): () => Promise<void> {
  const redisReady = redisReadiness(redis, { timeoutMs, cacheMs: 0 });
  return async () => {
    await Promise.all([
      postgresAnswers(db, timeoutMs),
      Promise.resolve(redisReady.check()).then((ready) => {
        if (!ready) throw new Error(`Redis did not answer within ${timeoutMs} ms`);
      }),
    ]);
  };
}

/** How the service's consumers meet an outage and a hung handler (see runConsumer). */
export type ConsumerTuning = Pick<
  ConsumerOptions,
  "probeDependencies" | "handlerTimeoutMs" | "onPauseChange"
>;
