import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import {
  DEPENDENCIES,
  type DependencyName,
  dependencyUrlsOf,
  howToStart,
  unreachableDependency,
} from "@switchboard/config";
import { Redis } from "ioredis";
import pg from "pg";

export interface CheckResult {
  name: DependencyName;
  url: string;
  ok: boolean;
  /** Why it failed, in words (connection refused, JetStream not enabled, timed out, …). */
  problem?: string;
  /** How to get it running on a laptop. */
  fix?: string;
}

class NotReady extends Error {
  constructor(
    readonly problem: string,
    readonly fix?: string,
  ) {
    super(problem);
  }
}

function within<T>(ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new NotReady(`no answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/** TCP connect and `SELECT 1`. Before `pnpm db:migrate` creates its database, the server's own one is asked. */
async function checkPostgres(url: string, timeoutMs: number) {
  const select = async (connectionString: string) => {
    const client = new pg.Client({ connectionString, connectionTimeoutMillis: timeoutMs });
    client.on("error", () => undefined);
    try {
      await client.connect();
      await client.query("SELECT 1");
    } finally {
      await client.end().catch(() => undefined);
    }
  };
  try {
    await select(url);
  } catch (error) {
    if ((error as { code?: string }).code !== "3D000") throw error; // database does not exist (yet)
    const server = new URL(url);
    server.pathname = "/postgres";
    await select(server.toString());
  }
}

async function checkRedis(url: string, timeoutMs: number) {
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  let lastError: unknown;
  redis.on("error", (error) => {
    lastError = error;
  });
  try {
    await redis.connect().catch((error) => {
      throw lastError ?? error;
    });
    if ((await redis.ping()) !== "PONG") throw new NotReady("PING was not answered with PONG");
  } finally {
    redis.disconnect();
  }
}

/** Connect and read the JetStream account: a server started without `-js` answers the connect only. */
async function checkNats(url: string, timeoutMs: number) {
  const nc = await connect({ servers: [url], timeout: timeoutMs, reconnect: false });
  try {
    const jsm = await jetstreamManager(nc, { timeout: timeoutMs }).catch((error: unknown) => {
      throw new NotReady(
        `JetStream is not enabled (${(error as Error).message})`,
        "restart nats-server with `-js` (infra/compose.yaml does)",
      );
    });
    await jsm.getAccountInfo();
  } finally {
    await nc.close().catch(() => undefined);
  }
}

const CHECKS: Record<DependencyName, (url: string, timeoutMs: number) => Promise<void>> = {
  postgres: checkPostgres,
  redis: checkRedis,
  nats: checkNats,
};

/** Checks every URL of PostgreSQL, Redis and NATS (with JetStream) at once, each within `timeoutMs`. */
export async function checkDependencies(
  environment: Record<string, string | undefined>,
  { timeoutMs = 3000 } = {},
): Promise<CheckResult[]> {
  const urls = dependencyUrlsOf(environment);
  const targets = (Object.keys(CHECKS) as DependencyName[]).flatMap((name) =>
    urls[name].map((url) => ({ name, url })),
  );
  return Promise.all(
    targets.map(async ({ name, url }): Promise<CheckResult> => {
      try {
        await within(timeoutMs, CHECKS[name](url, timeoutMs));
        return { name, url, ok: true };
      } catch (error) {
        const problem =
          error instanceof NotReady
            ? error.problem
            : (unreachableDependency(error, environment)?.problem ?? (error as Error).message);
        const fix = error instanceof NotReady && error.fix ? error.fix : howToStart(name);
        return { name, url, ok: false, problem, fix };
      }
    }),
  );
}

/** What `pnpm dev` prints before it starts anything. */
export function preflightReport(results: CheckResult[]): string {
  const missing = results.filter((r) => !r.ok);
  if (missing.length === 0) {
    return `dev preflight: ${results.map((r) => `${DEPENDENCIES[r.name].label} ${r.url}`).join(", ")} answer\n`;
  }
  const lines = missing.map(
    (r) =>
      `  ✗ ${DEPENDENCIES[r.name].label} at ${r.url} (${DEPENDENCIES[r.name].variable}): ${r.problem} — ${r.fix}`,
  );
  return `dev preflight: ${missing.length === 1 ? "a dependency is" : "dependencies are"} not reachable, nothing was started:\n${lines.join("\n")}\n`;
}
