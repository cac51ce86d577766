import { env } from "@switchboard/config";
import { subscribedFieldsEnv } from "@switchboard/subscriptions";
import { z } from "zod";

export const subscriptionConfigSchema = z.object({
  PORT: env.port(3003),
  DATABASE_URL: env.databaseUrl(),
  REDIS_URL: env.redisUrls(),
  REDIS_KEY_PREFIX: env.redisKeyPrefix(),
  NATS_URL: env.natsUrl(),
  BUS_NAMESPACE: env.busNamespace(),
  NATS_STREAM_REPLICAS: env.positiveInt(1),
  FB_APP_ID: z.string({ error: "required" }).regex(/^\d+$/, "the numeric Meta app id"),
  FB_APP_SECRET: env.secret(),
  TOKEN_ENCRYPTION_KEYS: env.secret(10),
  GRAPH_API_BASE_URL: env.graphApiBaseUrl(),
  GRAPH_API_VERSION: env.graphApiVersion(),
  GRAPH_API_TIMEOUT: env.duration("10s"),
  /** Webhook fields every page is subscribed to (comma list; default: every Messenger event). */
  SUBSCRIBED_FIELDS: subscribedFieldsEnv(),
  /** How often each active page is checked against Meta; checks are spread over the interval. */
  RECONCILE_INTERVAL: env.duration("10m"),
  /** Pages this replica checks at once. */
  RECONCILE_CONCURRENCY: env.positiveInt(4),
  /** Retryable failures in a row before a page's subscription status becomes `error` (alert). */
  RECONCILE_FAILURE_THRESHOLD: env.positiveInt(3),
  /** Longest back-off for a rate-limited page (Meta's own estimate wins when longer). */
  RECONCILE_MAX_BACKOFF: env.duration("1h"),
  LOG_LEVEL: env.logLevel(),
});
export type SubscriptionConfig = z.infer<typeof subscriptionConfigSchema>;
