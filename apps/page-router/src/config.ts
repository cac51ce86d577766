import { env, graphEnvShape, loadConfig } from "@switchboard/config";
import { pageRateOverridesEnv } from "@switchboard/page-quota";
import { z } from "zod";

export const pageRouterConfigSchema = z.object({
  DATABASE_URL: env.databaseUrl(),
  REDIS_URL: env.redisUrls(),
  NATS_URL: env.natsUrl(),
  BUS_NAMESPACE: env.busNamespace(),
  NATS_STREAM_REPLICAS: env.positiveInt(1),
  REDIS_KEY_PREFIX: env.redisKeyPrefix(),
  LOG_LEVEL: env.logLevel(),
  PORT: env.port(3001),
  ...graphEnvShape,
  TOKEN_ENCRYPTION_KEYS: env.secret(10),
  /** Entries handled at once by one replica. */
  ROUTER_CONCURRENCY: env.positiveInt(32),
  /** A cached PageConnection is re-read after this even without a lifecycle event (a safety net, not the mechanism). */
  PAGE_CACHE_TTL: env.duration("5m"),
  /** A cached profile older than this is fetched again (the stale one is used if the fetch fails). */
  PROFILE_STALE_AFTER: env.duration("24h"),
  /** How long a "Meta will not give this profile" answer is remembered. */
  PROFILE_UNAVAILABLE_TTL: env.duration("1h"),
  /** Upper bound on the time a message waits for its profile. */
  PROFILE_TIMEOUT: env.duration("3s"),
  /** Token bucket per page for Graph calls, shared by every replica through Redis. */
  GRAPH_CALLS_PER_PAGE: env.positiveInt(50),
  GRAPH_CALLS_WINDOW: env.duration("10s"),
  /** Back off a page when Meta's usage headers report this percentage or more. */
  GRAPH_USAGE_BACKOFF_PERCENT: env.positiveInt(90),
  /** Back-off after a rate-limit error or high usage when Meta does not say how long. */
  GRAPH_BACKOFF: env.duration("5m"),
  /** Sweep of the unrouted stream for entries whose page is now connected (covers missed lifecycle events). */
  UNROUTED_SWEEP_INTERVAL: env.duration("1m"),
  /**
   * Fair share: messages per second each page is routed at while other pages are waiting too; beyond it
   * (and the burst) its entries wait in its overflow, never dropped. A page alone is not shaped.
   */
  PAGE_MESSAGE_RATE: env.positiveInt(50),
  /** Messages a page may send at once above its rate, once other pages wait, before it is shaped. */
  PAGE_MESSAGE_BURST: env.positiveInt(200),
  /** Longest an entry is held back for its page's share (from the ingress receiving it); then it is routed. */
  PAGE_SHAPING_MAX_DELAY: env.duration("5m"),
  /** Per-page rates: `<page id>:<messages per second>,…` (a busy page with an agreement). */
  PAGE_RATE_OVERRIDES: pageRateOverridesEnv(),
  /** Messages from one person to one page within PSID_FLOOD_WINDOW that flag a flood for abuse review. */
  PSID_FLOOD_THRESHOLD: env.positiveInt(60),
  PSID_FLOOD_WINDOW: env.duration("1m"),
  /** Entries of the shared consumer held un-acknowledged across replicas (shaped entries wait in the overflow, not here). */
  ROUTER_MAX_ACK_PENDING: env.positiveInt(20_000),
  /** The page id reserved for the webhook canary (the console's CANARY_PAGE_ID); empty = no canary. */
  CANARY_PAGE_ID: z.preprocess((v) => (v === "" ? undefined : v), z.string().regex(/^\d+$/).optional()),
});

export type PageRouterConfig = z.infer<typeof pageRouterConfigSchema>;

export function loadPageRouterConfig(environment?: Record<string, string | undefined>): PageRouterConfig {
  return loadConfig(pageRouterConfigSchema, environment);
}
