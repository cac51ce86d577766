import { env, graphEnvShape, loadConfig } from "@switchboard/config";
import { z } from "zod";

export const messageServiceConfigSchema = z.object({
  DATABASE_URL: env.databaseUrl(),
  REDIS_URL: env.redisUrls(),
  NATS_URL: env.natsUrl(),
  BUS_NAMESPACE: env.busNamespace(),
  NATS_STREAM_REPLICAS: env.positiveInt(1),
  REDIS_KEY_PREFIX: env.redisKeyPrefix(),
  LOG_LEVEL: env.logLevel(),
  PORT: env.port(3002),
  /** Messaging events in flight in one replica: waiting for a batch or in one (up to two batches run at once). */
  MESSAGE_CONCURRENCY: env.positiveInt(256),
  /** Events stored together: one Redlock call for their conversations, one transaction. */
  MESSAGE_BATCH_SIZE: env.positiveInt(100),
  /** How long an event waits for company while no batch is running (a busy replica never waits). */
  MESSAGE_BATCH_WAIT: env.duration("2ms"),
  /** Postgres connections of one replica. */
  DATABASE_POOL_SIZE: env.positiveInt(10),
  /** Redlock TTL of a conversation lock; extended automatically while the handler runs. */
  CONVERSATION_LOCK_TTL: env.duration("10s"),
  /** In-process retries of a held lock before giving the message back (short: most holds last milliseconds). */
  CONVERSATION_LOCK_WAIT_RETRIES: env.positiveInt(2),
  CONVERSATION_LOCK_WAIT_DELAY: env.duration("100ms"),
  /** A lock still held after the waits: redeliver after this delay (Chatwoot: 1 s) … */
  CONVERSATION_LOCK_RETRY_DELAY: env.duration("1s"),
  /** … at most this many deliveries (Chatwoot: 8), then dead-letter with the reason. */
  CONVERSATION_LOCK_MAX_ATTEMPTS: env.positiveInt(8),
  /** Domain events left unpublished (a crash between commit and publish) are published after this. */
  OUTBOX_SWEEP_INTERVAL: env.duration("5s"),
  /** Outbound webhook endpoints may be plain http or private addresses (tests and laptops only). */
  WEBHOOK_ALLOW_PRIVATE_TARGETS: env.boolean(false),
  /**
   * The send worker calls the Send API with each page's token (decrypted here) and appsecret_proof:
   * FB_APP_SECRET and GRAPH_API_BASE_URL for Pages, INSTAGRAM_APP_SECRET and INSTAGRAM_API_BASE_URL for
   * Instagram accounts.
   */
  ...graphEnvShape,
  /** Our Meta app: its echoes are ours (the row says `sent_by: switchboard`), others' are not. */
  FB_APP_ID: z.string().regex(/^\d+$/, "a numeric Meta app id").optional(),
  TOKEN_ENCRYPTION_KEYS: env.secret(10),
  /** Send API calls per page per second, shared by every replica through Redis. */
  SEND_RATE_PER_PAGE: env.positiveInt(20),
  /** Sends handled at once by one replica. */
  SEND_CONCURRENCY: env.positiveInt(8),
  /** Send API calls of one message that failed (known not sent) before it is marked failed; waiting never counts. */
  SEND_MAX_ATTEMPTS: env.positiveInt(12),
  /** After a call whose outcome is unknown (timeout), wait this long for its echo before reading the thread. */
  SEND_ECHO_WAIT: env.duration("5s"),
  /** One Graph API call's timeout; an attempt younger than this may still be in flight. */
  GRAPH_TIMEOUT: env.duration("10s"),
  /** A `sending` row untouched this long has lost its request: the sweeper queues it again. */
  SEND_STALE_AFTER: env.duration("5m"),
  SEND_SWEEP_INTERVAL: env.duration("1m"),
  /** A send not made this long after it was queued is failed with the reason. */
  SEND_GIVE_UP_AFTER: env.duration("24h"),
  /** A handler running longer is given up (transient): a hung connection never holds a slot for ever. */
  HANDLER_TIMEOUT: env.duration("60s"),
});

export type MessageServiceConfig = z.infer<typeof messageServiceConfigSchema>;

export function loadMessageServiceConfig(
  environment?: Record<string, string | undefined>,
): MessageServiceConfig {
  return loadConfig(messageServiceConfigSchema, environment);
}
