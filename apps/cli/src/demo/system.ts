import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { connectBus, deleteStreams } from "@switchboard/bus";
import { generateTokenKey } from "@switchboard/crypto";
import { applyMigrations, createDb, type Db } from "@switchboard/db";
import { createLogger } from "@switchboard/observability";

const root = fileURLToPath(new URL("../../../../", import.meta.url));
const SERVICES = ["fake-meta", "ingress", "page-router", "message-service", "subscription-service"] as const;
export type DemoService = (typeof SERVICES)[number];

/** The stores the demo runs on: the laptop's Postgres, Redis and NATS (`.env.example`). */
export interface DemoStores {
  DATABASE_URL: string;
  REDIS_URL: string;
  NATS_URL: string;
}

export interface DemoSystem {
  env: Record<string, string>;
  urls: Record<DemoService, string>;
  db: Db;
  /** `pnpm sb …` as an operator runs it, on this system. */
  sb(args: string[], stdin?: string): Promise<{ code: number; stdout: string; stderr: string }>;
  metrics(service: DemoService): Promise<string>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function waitReady(name: string, child: ChildProcess, output: string[], url: string) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${name} exited: ${output.join("").slice(-1500)}`);
    const res = await fetch(url).catch(() => undefined);
    if (res?.status === 200) return;
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`${name} not ready after 30 s: ${output.join("").slice(-1500)}`);
}

function run(args: string[], env: Record<string, string>, stdin?: string) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    child.on("exit", (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.end(stdin ?? "");
  });
}

/**
 * Starts the fake Meta and the four services (built, `node dist/main.js`) on free ports, over a database,
 * bus namespace and Redis key prefix of their own, so the demo never touches a `pnpm dev` session's data.
 */
export async function startDemoSystem(stores: DemoStores): Promise<DemoSystem> {
  const runId = `demo${Date.now().toString(36)}${randomUUID().slice(0, 4)}`;
  const databaseUrl = new URL(stores.DATABASE_URL);
  const adminUrl = new URL(stores.DATABASE_URL);
  adminUrl.pathname = "/postgres";
  databaseUrl.pathname = `/switchboard_${runId}`;
  const admin = createDb(adminUrl.toString(), { poolSize: 1 });
  await admin.$executeRawUnsafe(`CREATE DATABASE "switchboard_${runId}"`);
  await applyMigrations(databaseUrl.toString());

  const ports = Object.fromEntries(
    await Promise.all(SERVICES.map(async (s) => [s, await freePort()] as const)),
  );
  const urls = Object.fromEntries(SERVICES.map((s) => [s, `http://127.0.0.1:${ports[s]}`])) as Record<
    DemoService,
    string
  >;
  const env: Record<string, string> = {
    NODE_ENV: "production",
    LOG_LEVEL: "warn",
    DATABASE_URL: databaseUrl.toString(),
    REDIS_URL: stores.REDIS_URL,
    NATS_URL: stores.NATS_URL,
    BUS_NAMESPACE: runId,
    REDIS_KEY_PREFIX: `${runId}:`,
    FB_APP_ID: "100000000000001",
    FB_APP_SECRET: `demo-secret-${runId}`,
    FB_VERIFY_TOKEN: "demo-verify-token",
    TOKEN_ENCRYPTION_KEYS: generateTokenKey("demo"),
    GRAPH_API_BASE_URL: urls["fake-meta"],
    GRAPH_API_VERSION: "v21.0",
    INGRESS_URL: `${urls.ingress}/webhooks/facebook`,
    FAKE_META_ECHO_MODE: "random",
    RECONCILE_INTERVAL: "1h",
  };
  const processes = SERVICES.map((name) => {
    const output: string[] = [];
    const child = spawn(process.execPath, ["--enable-source-maps", `apps/${name}/dist/main.js`], {
      cwd: root,
      env: { ...process.env, ...env, PORT: String(ports[name]) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout?.on("data", (c: Buffer) => output.push(c.toString()));
    child.stderr?.on("data", (c: Buffer) => output.push(c.toString()));
    return { name, child, output };
  });
  const db = createDb(env.DATABASE_URL!, { poolSize: 2 });

  const stop = async () => {
    await Promise.all(
      processes.map(
        ({ child }) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null) return resolve();
            child.once("exit", () => resolve());
            child.kill("SIGTERM");
          }),
      ),
    );
    await db.$disconnect();
    await admin.$executeRawUnsafe(`DROP DATABASE IF EXISTS "switchboard_${runId}" WITH (FORCE)`);
    await admin.$disconnect();
    const bus = await connectBus({
      servers: [stores.NATS_URL],
      name: "demo-cleanup",
      namespace: runId,
      log: createLogger({ service: "demo", level: "silent" }),
      ensureStreams: false,
    });
    await deleteStreams(bus.jsm, bus.topology);
    await bus.drain();
  };

  try {
    await Promise.all(
      processes.map(({ name, child, output }) =>
        waitReady(name, child, output, `${urls[name]}${name === "fake-meta" ? "/healthz" : "/readyz"}`),
      ),
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    env,
    urls,
    db,
    sb: (args, stdin) => run(["apps/cli/dist/main.js", ...args], env, stdin),
    metrics: async (service) => (await fetch(`${urls[service]}/metrics`)).text(),
    stop,
  };
}
