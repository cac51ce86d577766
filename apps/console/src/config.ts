import { env } from "@switchboard/config";
import { subscribedFieldsEnv } from "@switchboard/subscriptions";
import { z } from "zod";

export const consoleConfigSchema = z
  .object({
    PORT: env.port(3004),
    DATABASE_URL: env.databaseUrl(),
    NATS_URL: env.natsUrl(),
    BUS_NAMESPACE: env.busNamespace(),
    NATS_STREAM_REPLICAS: env.positiveInt(1),
    /** The operator credential: a bearer token, the password of basic auth, or typed into the sign-in form. */
    OPERATOR_TOKEN: env.secret(16),
    /** How long a sign-in lasts: the session cookie is refused after it, however active the operator is. */
    CONSOLE_SESSION_TTL: env.duration("12h").pipe(
      z
        .number()
        .min(60_000, "at least 1m")
        .max(7 * 24 * 3_600_000, "at most a week (168h)"),
    ),
    TOKEN_ENCRYPTION_KEYS: env.secret(10),
    FB_APP_ID: z.string({ error: "required" }).regex(/^\d+$/, "the numeric Meta app id"),
    FB_APP_SECRET: env.secret(),
    GRAPH_API_BASE_URL: env.graphApiBaseUrl(),
    GRAPH_API_VERSION: env.graphApiVersion(),
    GRAPH_API_TIMEOUT: env.duration("10s"),
    SUBSCRIBED_FIELDS: subscribedFieldsEnv(),
    /** The webhook canary runs when both are set: the public webhook URL and the page id reserved for it. */
    CANARY_INGRESS_URL: env.httpUrl().optional(),
    CANARY_PAGE_ID: z.preprocess(
      (v) => (v === "" ? undefined : v),
      z.string().regex(/^\d+$/, "digits, the same as the page-router's CANARY_PAGE_ID").optional(),
    ),
    CANARY_INTERVAL: env.duration("1m"),
    CANARY_TIMEOUT: env.duration("10s"),
    LOG_LEVEL: env.logLevel(),
  })
  .refine((c) => (c.CANARY_INGRESS_URL === undefined) === (c.CANARY_PAGE_ID === undefined), {
    message: "set both CANARY_INGRESS_URL and CANARY_PAGE_ID to run the webhook canary, or neither",
    path: ["CANARY_PAGE_ID"],
  });
export type ConsoleConfig = z.infer<typeof consoleConfigSchema>;
