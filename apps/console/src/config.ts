import { isIP } from "node:net";
import { env } from "@switchboard/config";
import { subscriptionEnvShape } from "@switchboard/subscriptions";
import { z } from "zod";

/** Express's `trust proxy`: off, the number of proxies in front of the console, or their addresses. */
export type TrustProxy = false | number | string[];

const PROXY_PRESETS = new Set(["loopback", "linklocal", "uniquelocal"]);
const isProxyAddress = (entry: string) => {
  if (PROXY_PRESETS.has(entry)) return true;
  const [address = "", prefix, ...rest] = entry.split("/");
  const family = isIP(address);
  if (family === 0 || rest.length > 0) return false;
  if (prefix === undefined) return true;
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128);
};

/**
 * CONSOLE_TRUST_PROXY: `false` (the default: the peer is the client), a hop count such as `1`, or the
 * proxies' addresses and subnets (`10.0.0.0/8,loopback`). `true` is refused: Express would then take the
 * left-most X-Forwarded-For entry, which the client writes itself, and every guess could name a new address.
 */
const trustProxyEnv = () =>
  z.preprocess(
    (v) => (v === "" ? undefined : v),
    z
      .string()
      .default("false")
      .transform((v, ctx): TrustProxy => {
        const text = v.trim();
        if (text === "false" || text === "0") return false;
        if (/^\d+$/.test(text)) return Number(text);
        if (text === "true") {
          ctx.addIssue({
            code: "custom",
            message:
              "true trusts any X-Forwarded-For a client sends; give the number of proxies in front (e.g. 1) or their addresses",
          });
          return z.NEVER;
        }
        const entries = text.split(",").map((entry) => entry.trim());
        if (!entries.every(isProxyAddress)) {
          ctx.addIssue({
            code: "custom",
            message:
              "false, a number of proxies, or comma-separated addresses/subnets (loopback, 10.0.0.0/8, …)",
          });
          return z.NEVER;
        }
        return entries;
      }),
  );

export const consoleConfigSchema = z
  .object({
    PORT: env.port(3004),
    DATABASE_URL: env.databaseUrl(),
    NATS_URL: env.natsUrl(),
    BUS_NAMESPACE: env.busNamespace(),
    NATS_STREAM_REPLICAS: env.positiveInt(1),
    /** The operator credential: a bearer token, the password of basic auth, or typed into the sign-in form. */
    OPERATOR_TOKEN: env.secret(16),
    CONSOLE_TRUST_PROXY: trustProxyEnv(),
    /** Pages per screen of the overview (problems first): its cost grows with this, not with the pages. */
    CONSOLE_PAGE_SIZE: env.positiveInt(50),
    /** How long a sign-in lasts: the session cookie is refused after it, however active the operator is. */
    CONSOLE_SESSION_TTL: env.duration("12h").pipe(
      z
        .number()
        .min(60_000, "at least 1m")
        .max(7 * 24 * 3_600_000, "at most a week (168h)"),
    ),
    TOKEN_ENCRYPTION_KEYS: env.secret(10),
    ...subscriptionEnvShape,
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
