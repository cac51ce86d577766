import { env } from "@switchboard/config";
import { parseRetrySchedule } from "@switchboard/webhooks";
import { z } from "zod";

export const dispatcherConfigSchema = z.object({
  PORT: env.port(3005),
  DATABASE_URL: env.databaseUrl(),
  NATS_URL: env.natsUrl(),
  BUS_NAMESPACE: env.busNamespace(),
  /** Decrypts endpoint secrets (the same keys as page tokens). */
  TOKEN_ENCRYPTION_KEYS: env.secret(10),
  /** Delays after each failed attempt; once used up the delivery has failed (an operator can retry it). */
  WEBHOOK_RETRY_SCHEDULE: z
    .string()
    .default("5s,5m,30m,2h,5h,10h,10h")
    .transform((value, ctx) => {
      try {
        return parseRetrySchedule(value);
      } catch (error) {
        ctx.addIssue({ code: "custom", message: (error as Error).message });
        return z.NEVER;
      }
    }),
  /** A 2xx within this time is a delivery; anything else is retried. */
  WEBHOOK_TIMEOUT: env.duration("10s"),
  /** An endpoint whose every delivery failed for this long is disabled (with an alert and an event). */
  WEBHOOK_DISABLE_AFTER: env.duration("5d"),
  /** Plain http and private, loopback or link-local targets (tests and laptops only). */
  WEBHOOK_ALLOW_PRIVATE_TARGETS: env.boolean(false),
  /** Attempts in flight per replica, and per endpoint across replicas. */
  WEBHOOK_MAX_IN_FLIGHT: env.positiveInt(64),
  WEBHOOK_ENDPOINT_CONCURRENCY: env.positiveInt(4),
  /** Failures in a row that open an endpoint's circuit, and for how long. */
  WEBHOOK_CIRCUIT_THRESHOLD: env.positiveInt(5),
  WEBHOOK_CIRCUIT_OPEN: env.duration("30s"),
  /** How often a replica looks for due deliveries when nothing pokes it (retries, other replicas' rows). */
  WEBHOOK_POLL_INTERVAL: env.duration("500ms"),
  /**
   * Delivered deliveries (and their attempts) are removed after this long; one still waiting after it (its
   * endpoint disabled) is marked failed, and removed after twice as long.
   */
  WEBHOOK_DELIVERY_RETENTION: env.duration("30d"),
  /** Events fanned out at once per replica. */
  WEBHOOK_FAN_OUT_CONCURRENCY: env.positiveInt(16),
  LOG_LEVEL: env.logLevel(),
});
export type DispatcherConfig = z.infer<typeof dispatcherConfigSchema>;
