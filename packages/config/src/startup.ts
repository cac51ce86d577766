import { z } from "zod";
import { env } from "./index";

/** The stores and the broker a service needs, how to name them and how to start one on a laptop. */
export const DEPENDENCIES = {
  postgres: {
    label: "PostgreSQL",
    variable: "DATABASE_URL",
    composeService: "postgres",
    aptPackage: "postgresql",
  },
  redis: { label: "Redis", variable: "REDIS_URL", composeService: "redis", aptPackage: "redis-server" },
  nats: { label: "NATS", variable: "NATS_URL", composeService: "nats", aptPackage: "nats-server" },
} as const;
export type DependencyName = keyof typeof DEPENDENCIES;

export function howToStart(name: DependencyName): string {
  const dependency = DEPENDENCIES[name];
  return `start it with \`docker compose -f infra/compose.yaml up -d ${dependency.composeService}\` or install ${dependency.aptPackage}`;
}

/** Each dependency's URLs from the environment, with the defaults the services use (.env.example). */
export function dependencyUrlsOf(environment: Record<string, string | undefined> = process.env) {
  const dependencyUrls = z.object({
    DATABASE_URL: env.databaseUrl(),
    REDIS_URL: env.redisUrls(),
    NATS_URL: env.natsUrl(),
  });
  const parsed = dependencyUrls.safeParse(environment);
  const urls = parsed.success ? parsed.data : dependencyUrls.parse({}); // a bad URL is the config error's to report; the defaults still name the service
  return { postgres: [urls.DATABASE_URL], redis: urls.REDIS_URL, nats: urls.NATS_URL } satisfies Record<
    DependencyName,
    string[]
  >;
}

/** A refused, unresolved or timed-out connection, in words. */
const NETWORK_CODES: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host not found",
  ETIMEDOUT: "timed out",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ECONNRESET: "connection reset",
};

interface ErrorShape {
  name?: string;
  message?: string;
  code?: string;
  address?: string;
  hostname?: string;
  port?: number;
  cause?: unknown;
  errors?: unknown[];
  meta?: { driverAdapterError?: { cause?: { kind?: string; host?: string; port?: number } } };
}

/** The error and its causes (nats.js and Prisma wrap the socket's error; pg gives an AggregateError). */
function chain(error: unknown): ErrorShape[] {
  const out: ErrorShape[] = [];
  const visit = (e: unknown) => {
    if (!e || typeof e !== "object" || out.length > 10 || out.includes(e as ErrorShape)) return;
    const shape = e as ErrorShape;
    out.push(shape);
    visit(shape.cause);
    for (const inner of shape.errors ?? []) visit(inner);
  };
  visit(error);
  return out;
}

const hostAndPort = (url: string) => {
  try {
    const parsed = new URL(url);
    return { host: parsed.hostname, port: parsed.port ? Number(parsed.port) : undefined };
  } catch {
    return { host: undefined, port: undefined };
  }
};

/** Which dependency a connection error is about, and what went wrong, or undefined for another error. */
export function unreachableDependency(
  error: unknown,
  environment: Record<string, string | undefined> = process.env,
): { name: DependencyName; urls: string[]; problem: string } | undefined {
  const urls = dependencyUrlsOf(environment);
  const errors = chain(error);
  const network = errors.find((e) => e.code && NETWORK_CODES[e.code]);
  const problem = network ? NETWORK_CODES[network.code!]! : undefined;
  const serving = (host: string | undefined, port: number | undefined) =>
    (Object.keys(urls) as DependencyName[]).find((name) =>
      urls[name].some((url) => {
        const target = hostAndPort(url);
        return (port === undefined || target.port === port) && (host === undefined || target.host === host);
      }),
    );

  // Prisma over the pg adapter: "Can't reach database server at host:port".
  const prisma = errors.find((e) => e.meta?.driverAdapterError?.cause?.kind === "DatabaseNotReachable");
  if (prisma) return { name: "postgres", urls: urls.postgres, problem: problem ?? "not reachable" };
  // nats.js names its failures (ConnectionError "connection refused"; a timeout or a closed connection).
  if (errors.some((e) => e.name === "ConnectionError")) {
    return { name: "nats", urls: urls.nats, problem: problem ?? errors[0]!.message ?? "not reachable" };
  }
  // ioredis gives up on a command once its retries for a dead server are spent.
  if (errors.some((e) => e.name === "MaxRetriesPerRequestError")) {
    return { name: "redis", urls: urls.redis, problem: problem ?? "no answer" };
  }
  if (!network) return undefined;
  const name = serving(network.address ?? network.hostname, network.port);
  return name ? { name, urls: urls[name], problem: problem! } : undefined;
}

/**
 * The one line a service prints when it cannot start: a bad variable as the config error says it, an
 * unreachable store or broker by name and URL with how to start it, anything else with its stack.
 */
export function describeStartupFailure(
  error: unknown,
  environment: Record<string, string | undefined> = process.env,
): string {
  // By name: a service built from dist and a package read from source hold two ConfigError classes.
  if (error instanceof Error && error.name === "ConfigError") return `start-up failed: ${error.message}`;
  const unreachable = unreachableDependency(error, environment);
  if (unreachable) {
    const { label } = DEPENDENCIES[unreachable.name];
    return `start-up failed: cannot reach ${label} at ${unreachable.urls.join(",")} (${unreachable.problem}) — ${howToStart(unreachable.name)}`;
  }
  return `start-up failed: ${error instanceof Error ? error.stack : String(error)}`;
}
