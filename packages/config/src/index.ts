import { z } from "zod";

export {
  DEPENDENCIES,
  type DependencyName,
  dependencyUrlsOf,
  describeStartupFailure,
  howToStart,
  unreachableDependency,
} from "./startup";

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

/**
 * Reads the environment once, through a zod schema whose keys are the variable names, and names
 * every missing or bad variable in one error.
 */
export function loadConfig<S extends z.ZodObject>(
  schema: S,
  env: Record<string, string | undefined> = process.env,
): z.infer<S> {
  const result = schema.safeParse(env);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const name = String(issue.path[0] ?? "environment");
    const value = env[name];
    return value === undefined || value === ""
      ? `${name} is missing (${issue.message})`
      : `${name} is invalid: ${issue.message}`;
  });
  throw new ConfigError(problems);
}

const emptyAsUndefined = (value: unknown) => (value === "" ? undefined : value);
const url = (protocols: string[], fallback?: string) => {
  const base = z
    .string()
    .refine((v) => protocols.some((p) => v.startsWith(`${p}://`)), `must be a ${protocols.join(" or ")} URL`);
  return z.preprocess(emptyAsUndefined, fallback === undefined ? base : base.default(fallback));
};

/** `30s`, `10m`, `1h`, `5d`, `250ms` or a bare number of milliseconds → milliseconds. */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!match) return undefined;
  const factor = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(match[2] ?? "ms") as "ms"];
  return Math.round(Number(match[1]) * factor);
}

export const env = {
  databaseUrl: () => url(["postgres", "postgresql"], "postgresql://postgres@127.0.0.1:5432/switchboard"),
  /** One URL, or several comma-separated independent nodes for a Redlock quorum. */
  redisUrls: () =>
    z.preprocess(
      emptyAsUndefined,
      z
        .string()
        .default("redis://127.0.0.1:6379")
        .transform((v) => v.split(",").map((s) => s.trim()))
        .pipe(z.array(z.string().regex(/^rediss?:\/\//, "each entry must be a redis:// URL")).min(1)),
    ),
  natsUrl: () =>
    z.preprocess(
      emptyAsUndefined,
      z
        .string()
        .default("nats://127.0.0.1:4222")
        .transform((v) => v.split(",").map((s) => s.trim()))
        .pipe(z.array(z.string().regex(/^(nats|tls|wss?):\/\//, "each entry must be a nats:// URL")).min(1)),
    ),
  httpUrl: (fallback?: string) => url(["http", "https"], fallback),
  secret: (minLength = 8) =>
    z.string({ error: "required" }).min(minLength, `at least ${minLength} characters`),
  port: (fallback: number) =>
    z.preprocess(emptyAsUndefined, z.coerce.number().int().min(0).max(65535).default(fallback)),
  positiveInt: (fallback: number) =>
    z.preprocess(emptyAsUndefined, z.coerce.number().int().positive().default(fallback)),
  duration: (fallback: string) =>
    z.preprocess(
      emptyAsUndefined,
      z
        .string()
        .default(fallback)
        .transform((v, ctx) => {
          const ms = parseDuration(v);
          if (ms === undefined || ms <= 0) {
            ctx.addIssue({ code: "custom", message: "must be a duration such as 250ms, 30s, 10m or 1h" });
            return z.NEVER;
          }
          return ms;
        }),
    ),
  logLevel: () =>
    z.preprocess(
      emptyAsUndefined,
      z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
    ),
  busNamespace: () =>
    z.preprocess(
      emptyAsUndefined,
      z
        .string()
        .regex(/^[a-z][a-z0-9_-]*$/, "lowercase letters, digits, - and _")
        .default("sb"),
    ),
  /** Key prefix for everything a service stores in Redis (tests isolate runs with it). */
  redisKeyPrefix: () => z.preprocess(emptyAsUndefined, z.string().default("")),
  graphApiBaseUrl: () => url(["http", "https"], "https://graph.facebook.com"),
  /** The Instagram API with Instagram Login (INSTAGRAM_API_BASE_URL): Instagram accounts are called here. */
  instagramApiBaseUrl: () => url(["http", "https"], "https://graph.instagram.com"),
  graphApiVersion: () =>
    z.preprocess(
      emptyAsUndefined,
      z
        .string()
        .regex(/^v\d+\.\d+$/, "like v21.0")
        .default("v21.0"),
    ),
  boolean: (fallback: boolean) =>
    z
      .preprocess(emptyAsUndefined, z.enum(["true", "false", "1", "0"]).default(fallback ? "true" : "false"))
      .transform((v) => v === "true" || v === "1"),
};

/**
 * The settings every service that calls Meta reads, for both platforms: Facebook Pages on the Graph API
 * (FB_APP_SECRET), Instagram accounts on the Instagram API with Instagram Login, whose app has its own
 * secret (INSTAGRAM_APP_SECRET; FB_APP_SECRET when one app does both).
 */
export const graphEnvShape = {
  FB_APP_SECRET: env.secret(),
  GRAPH_API_BASE_URL: env.graphApiBaseUrl(),
  GRAPH_API_VERSION: env.graphApiVersion(),
  INSTAGRAM_API_BASE_URL: env.instagramApiBaseUrl(),
  INSTAGRAM_APP_SECRET: z.preprocess(emptyAsUndefined, env.secret().optional()),
};

export interface GraphHost {
  baseUrl: string;
  version: string;
  appSecret: string;
}

/** Where each platform's calls go and which secret proves them (`appsecret_proof`). */
export function graphHostsOf(config: {
  FB_APP_SECRET: string;
  GRAPH_API_BASE_URL: string;
  GRAPH_API_VERSION: string;
  INSTAGRAM_API_BASE_URL: string;
  INSTAGRAM_APP_SECRET?: string | undefined;
}): { messenger: GraphHost; instagram: GraphHost } {
  return {
    messenger: {
      baseUrl: config.GRAPH_API_BASE_URL,
      version: config.GRAPH_API_VERSION,
      appSecret: config.FB_APP_SECRET,
    },
    instagram: {
      baseUrl: config.INSTAGRAM_API_BASE_URL,
      version: config.GRAPH_API_VERSION,
      appSecret: config.INSTAGRAM_APP_SECRET ?? config.FB_APP_SECRET,
    },
  };
}
