import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { connectBus, deleteStreams } from "@switchboard/bus";
import { generateTokenKey } from "@switchboard/crypto";
import { applyMigrations, createDb, type Db } from "@switchboard/db";
import { createLogger } from "@switchboard/observability";
import {
  createTestDatabase,
  eventually,
  type TestDatabase,
  testServices,
  uniqueId,
} from "@switchboard/testing";

const root = fileURLToPath(new URL("..", import.meta.url));

export const SERVICES = ["ingress", "page-router", "message-service", "subscription-service"] as const;
export type ServiceName = (typeof SERVICES)[number] | "fake-meta";

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

export interface RunningService {
  name: ServiceName;
  url: string;
  process: ChildProcess;
  output: string[];
}

/**
 * The whole system as processes, built as in production (`node dist/main.js`), on the real local
 * services, isolated by its own database, bus namespace and Redis key prefix.
 */
export interface System {
  env: Record<string, string>;
  database: TestDatabase;
  db: Db;
  services: Record<ServiceName, RunningService>;
  fakeMetaUrl: string;
  ingressUrl: string;
  appSecret: string;
  /** Runs the operator CLI (`pnpm sb …`) as a process with this system's environment. */
  cli(args: string[], stdin?: string): Promise<{ code: number; stdout: string; stderr: string }>;
  stop(): Promise<void>;
}

function startProcess(
  name: ServiceName,
  entry: string,
  env: Record<string, string>,
  port: number,
): RunningService {
  const child = spawn(process.execPath, ["--enable-source-maps", entry], {
    cwd: root,
    env: { ...process.env, ...env, PORT: String(port) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output: string[] = [];
  child.stdout?.on("data", (chunk: Buffer) => output.push(chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => output.push(chunk.toString()));
  return { name, url: `http://127.0.0.1:${port}`, process: child, output };
}

async function waitReady(service: RunningService, path: string) {
  await eventually(
    async () => {
      if (service.process.exitCode !== null) {
        throw new Error(
          `${service.name} exited (${service.process.exitCode}): ${service.output.join("").slice(-2000)}`,
        );
      }
      const res = await fetch(`${service.url}${path}`).catch(() => undefined);
      return res?.status === 200;
    },
    { timeoutMs: 30_000, intervalMs: 100, message: `${service.name} to be ready` },
  );
}

export async function startSystem(extraEnv: Record<string, string> = {}): Promise<System> {
  const services = testServices();
  const database = await createTestDatabase(applyMigrations);
  const appSecret = `e2e-secret-${uniqueId()}`;
  const ports = Object.fromEntries(
    await Promise.all(
      [...SERVICES, "fake-meta" as const].map(async (name) => [name, await freePort()] as const),
    ),
  ) as Record<ServiceName, number>;
  const fakeMetaUrl = `http://127.0.0.1:${ports["fake-meta"]}`;
  const ingressUrl = `http://127.0.0.1:${ports.ingress}`;
  const env: Record<string, string> = {
    NODE_ENV: "production",
    LOG_LEVEL: "info",
    DATABASE_URL: database.url,
    REDIS_URL: services.redisUrl,
    NATS_URL: services.natsUrl,
    BUS_NAMESPACE: uniqueId("e"),
    REDIS_KEY_PREFIX: `${uniqueId("e")}:`,
    FB_APP_ID: "100000000000001",
    FB_APP_SECRET: appSecret,
    FB_VERIFY_TOKEN: "e2e-verify-token",
    TOKEN_ENCRYPTION_KEYS: generateTokenKey("e2e"),
    GRAPH_API_BASE_URL: fakeMetaUrl,
    GRAPH_API_VERSION: "v21.0",
    INGRESS_URL: `${ingressUrl}/webhooks/facebook`,
    RECONCILE_INTERVAL: "1h",
    ...extraEnv,
  };
  const running = {} as Record<ServiceName, RunningService>;
  const entries: Array<[ServiceName, string]> = [
    ["fake-meta", "apps/fake-meta/dist/main.js"],
    ...SERVICES.map((name) => [name, `apps/${name}/dist/main.js`] as [ServiceName, string]),
  ];
  for (const [name, entry] of entries) running[name] = startProcess(name, entry, env, ports[name]);
  const stopAll = async () => {
    await Promise.all(
      Object.values(running).map(
        (s) =>
          new Promise<void>((resolve) => {
            if (s.process.exitCode !== null) return resolve();
            s.process.once("exit", () => resolve());
            s.process.kill("SIGTERM");
          }),
      ),
    );
  };
  try {
    await Promise.all(
      Object.values(running).map((s) => waitReady(s, s.name === "fake-meta" ? "/healthz" : "/readyz")),
    );
  } catch (error) {
    await stopAll();
    await database.drop();
    throw error;
  }
  const db = createDb(database.url);
  return {
    env,
    database,
    db,
    services: running,
    fakeMetaUrl,
    ingressUrl,
    appSecret,
    cli: (args, stdin) =>
      new Promise((resolve) => {
        const child = spawn(process.execPath, ["apps/cli/dist/main.js", ...args], {
          cwd: root,
          env: { ...process.env, ...env },
          stdio: ["pipe", "pipe", "pipe"],
        });
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
      }),
    async stop() {
      await stopAll();
      await db.$disconnect();
      await database.drop();
      const bus = await connectBus({
        servers: [services.natsUrl],
        name: "e2e-cleanup",
        namespace: env.BUS_NAMESPACE!,
        log: createLogger({ service: "e2e", level: "silent" }),
        ensureStreams: false,
      });
      await deleteStreams(bus.jsm, bus.topology);
      await bus.drain();
    },
  };
}
