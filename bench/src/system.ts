import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { connectBus, deleteStreams } from "@switchboard/bus";
import { generateTokenKey } from "@switchboard/crypto";
import { applyMigrations } from "@switchboard/db";
import { createLogger } from "@switchboard/observability";
import pg from "pg";

export const root = fileURLToPath(new URL("../..", import.meta.url));

/** The local Postgres, Redis and NATS (the same defaults as the test suite's global setup). */
export const services = {
  databaseUrl: process.env.DATABASE_URL || "postgresql://postgres@127.0.0.1:5432/postgres",
  redisUrl: process.env.REDIS_URL || "redis://127.0.0.1:6379",
  natsUrl: process.env.NATS_URL || "nats://127.0.0.1:4222",
};

export const quiet = createLogger({ service: "bench", level: "silent" });

export function uniqueId(prefix: string): string {
  return `${prefix}${randomBytes(5).toString("hex")}`;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export async function waitFor<T>(
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  { timeoutMs = 30_000, intervalMs = 100, message = "condition" } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value as T;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out waiting for ${message}${last ? `: ${(last as Error).message}` : ""}`);
}

export interface BenchDatabase {
  url: string;
  drop(): Promise<void>;
}

/** A fresh, migrated database of its own, so a run never sees another run's rows. */
export async function createBenchDatabase(): Promise<BenchDatabase> {
  const name = uniqueId("sb_bench_");
  const admin = new pg.Client({ connectionString: services.databaseUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(services.databaseUrl);
  url.pathname = `/${name}`;
  await applyMigrations(url.toString());
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: services.databaseUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** The environment every service of one bench system shares: its own namespace, key prefix and secrets. */
export function systemEnv(databaseUrl: string, fakeMetaUrl: string, ingressUrl: string) {
  return {
    NODE_ENV: "production",
    LOG_LEVEL: "warn",
    DATABASE_URL: databaseUrl,
    REDIS_URL: services.redisUrl,
    NATS_URL: services.natsUrl,
    BUS_NAMESPACE: uniqueId("b"),
    REDIS_KEY_PREFIX: `${uniqueId("b")}:`,
    FB_APP_ID: "100000000000001",
    FB_APP_SECRET: `bench-secret-${uniqueId("")}`,
    FB_VERIFY_TOKEN: "bench-verify-token",
    TOKEN_ENCRYPTION_KEYS: generateTokenKey("bench"),
    GRAPH_API_BASE_URL: fakeMetaUrl,
    GRAPH_API_VERSION: "v21.0",
    INGRESS_URL: `${ingressUrl}/webhooks/facebook`,
    RECONCILE_INTERVAL: "1h",
  };
}

export interface ServiceProcess {
  name: string;
  url: string;
  process: ChildProcess;
  pid: number;
  /** Where its stdout and stderr go: a file, so logging costs the bench process nothing. */
  logFile: string;
  stop(): Promise<void>;
}

const logDir = join(root, "bench/results/tmp/logs");

/** Starts `node <args>` as production does, and waits until `readyPath` answers 200. */
export async function startProcess(
  name: string,
  args: string[],
  env: Record<string, string>,
  port: number,
  readyPath = "/readyz",
): Promise<ServiceProcess> {
  mkdirSync(logDir, { recursive: true });
  const logFile = join(logDir, `${name}.log`);
  const out = openSync(logFile, "w");
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: { ...process.env, ...env, PORT: String(port) },
    stdio: ["ignore", out, out],
  });
  closeSync(out);
  const tail = () => readFileSync(logFile, "utf8").slice(-2000);
  const service: ServiceProcess = {
    name,
    url: `http://127.0.0.1:${port}`,
    process: child,
    pid: child.pid ?? 0,
    logFile,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
        child.once("exit", () => {
          clearTimeout(killer);
          resolve();
        });
        child.kill("SIGTERM");
      }),
  };
  try {
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`${name} exited (${child.exitCode}): ${tail()}`);
        const res = await fetch(`${service.url}${readyPath}`).catch(() => undefined);
        return res?.status === 200;
      },
      { message: `${name} to be ready` },
    );
  } catch (error) {
    await service.stop();
    throw error;
  }
  return service;
}

export const serviceEntry = (app: string) => ["--enable-source-maps", `apps/${app}/dist/main.js`];

/** Deletes the streams of a bench namespace. */
export async function deleteNamespace(namespace: string) {
  const bus = await connectBus({
    servers: [services.natsUrl],
    name: "bench-cleanup",
    namespace,
    log: quiet,
    ensureStreams: false,
  });
  await deleteStreams(bus.jsm, bus.topology);
  await bus.drain();
}
