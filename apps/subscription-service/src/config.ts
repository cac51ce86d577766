import { env } from "@switchboard/config";
import { subscriptionEnvShape } from "@switchboard/subscriptions";
import { z } from "zod";

export const subscriptionConfigSchema = z.object({
  PORT: env.port(3003),
  DATABASE_URL: env.databaseUrl(),
  REDIS_URL: env.redisUrls(),
  REDIS_KEY_PREFIX: env.redisKeyPrefix(),
  NATS_URL: env.natsUrl(),
  BUS_NAMESPACE: env.busNamespace(),
  NATS_STREAM_REPLICAS: env.positiveInt(1),
  ...subscriptionEnvShape,
  TOKEN_ENCRYPTION_KEYS: env.secret(10),
  /** How often each active page is checked against Meta; checks are spread over the interval. */
  RECONCILE_INTERVAL: env.duration("10m"),
  /** Pages this replica checks at once. */
  RECONCILE_CONCURRENCY: env.positiveInt(4),
  /** Retryable failures in a row before a page's subscription status becomes `error` (alert). */
  RECONCILE_FAILURE_THRESHOLD: env.positiveInt(3),
  /** Longest back-off for a rate-limited page (Meta's own estimate wins when longer). */
  RECONCILE_MAX_BACKOFF: env.duration("1h"),
  /** Instagram tokens (60 days) are refreshed once they expire within this; checked with each reconcile. */
  INSTAGRAM_TOKEN_REFRESH_BEFORE: env.duration("10d"),
  LOG_LEVEL: env.logLevel(),
});
export type SubscriptionConfig = z.infer<typeof subscriptionConfigSchema>;
