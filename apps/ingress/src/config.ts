import { env } from "@switchboard/config";
import { z } from "zod";

export const ingressConfigSchema = z.object({
  PORT: env.port(3000),
  NATS_URL: env.natsUrl(),
  BUS_NAMESPACE: env.busNamespace(),
  NATS_STREAM_REPLICAS: env.positiveInt(1),
  FB_APP_SECRET: env.secret(),
  /** Instagram Login apps show their own secret; webhooks signed with it are accepted too. */
  INSTAGRAM_APP_SECRET: z.preprocess((v) => (v === "" ? undefined : v), env.secret().optional()),
  FB_VERIFY_TOKEN: env.secret(4),
  /** Meta batches up to 1,000 updates in one POST. */
  WEBHOOK_BODY_LIMIT: z.preprocess(
    (v) => (v === "" ? undefined : v),
    z
      .string()
      .regex(/^\d+(b|kb|mb)$/i)
      .default("5mb"),
  ),
  /** How long to wait for JetStream to store an entry before answering 503 so Meta retries. */
  PUBLISH_TIMEOUT: env.duration("3s"),
  LOG_LEVEL: env.logLevel(),
});
export type IngressConfig = z.infer<typeof ingressConfigSchema>;
