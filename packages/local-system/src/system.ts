import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { busTopology } from "@switchboard/contracts";
import { generateTokenKey } from "@switchboard/crypto";
import { startBalancer } from "./balancer";
import { createIsolatedDatabase, type IsolatedDatabase } from "./database";
import { freePort, uniqueId } from "./ids";
import { deleteRedisKeys } from "./redis-keys";
import { repoRoot, type ServiceProcess, startServiceProcess } from "./service-process";

/**
 * The message pipeline, started by default (what `pnpm bench` measures); the fake Meta
 * (`packages/fake-meta`) always runs beside them as the Graph API.
 */
export const SERVICES = ["ingress", "page-router", "message-service", "subscription-service"] as const;
/** Every service of a deployment: the pipeline and the webhook-dispatcher (outbound webhooks). */
export const ALL_SERVICES = [...SERVICES, "webhook-dispatcher"] as const;
export type ServiceName = (typeof ALL_SERVICES)[number];
export type SystemApp = ServiceName | "fake-meta";

/** The Postgres (a database to connect to for CREATE DATABASE), Redis and NATS the system runs on. */
export interface Stores {
  databaseUrl: string;
  redisUrl: string;
  natsUrl: string;
}

export interface LocalSystemOptions<Db extends { $disconnect(): Promise<unknown> }> {
  stores: Stores;
  /** Applies the schema to the system's fresh database (`applyMigrations` from @switchboard/db). */
  migrate: (databaseUrl: string) => Promise<unknown>;
  /**
   * Opens the client handed back as `db` (`createDb` from @switchboard/db). Passed in rather than imported:
   * @switchboard/db's own tests use @switchboard/testing, which builds on this package.
   */
  connectDb: (databaseUrl: string) => Db;
  /** The services to start (the pipeline, SERVICES, by default; ALL_SERVICES adds the webhook-dispatcher). */
  apps?: readonly ServiceName[];
  /** Added to (or replacing) the shared environment: a service's own settings, a log level. */
  env?: Record<string, string>;
  /** Node flags for the services' processes (not the fake Meta's), e.g. `--cpu-prof`. */
  nodeFlags?: string[];
  /** Each process logs to `<logDir>/<app>.log` instead of to memory. */
  logDir?: string;
  /** Names the bus namespace and Redis key prefix (`<runId>:`); random by default. */
  runId?: string;
  /** The database is `<databasePrefix><runId>`. */
  databasePrefix?: string;
  /**
   * Processes per service (default 1). With more, the ingress replicas sit behind a balancer (`urls.ingress`,
   * also where the fake Meta sends webhooks), as behind a Kubernetes Service.
   */
  replicas?: number;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface LocalSystem<Db> {
  runId: string;
  /** The environment every process shares (what a service's config reads). */
  env: Record<string, string>;
  /** The bearer token of the fake Meta's control API (`/_fake/*`), given to the fake Meta only. */
  fakeMetaControlToken: string;
  databaseUrl: string;
  urls: Record<SystemApp, string>;
  processes: Partial<Record<SystemApp, ServiceProcess>>;
  /** Every replica of each service (`processes[app]` is the first). */
  replicas: Partial<Record<ServiceName, ServiceProcess[]>>;
  /** kill -9 one replica (as a crashed pod). */
  killReplica(app: ServiceName, index: number): Promise<void>;
  /** Starts a replica again on its port, with the system's environment; resolves once it is ready. */
  startReplica(app: ServiceName, index: number): Promise<void>;
  /** A client on the system's own database. */
  db: Db;
  /** The operator CLI (`pnpm sb …`, built) as a process on this system. */
  cli(args: string[], stdin?: string): Promise<CliResult>;
  /** The Prometheus text a process serves on /metrics. */
  metrics(app: SystemApp): Promise<string>;
  /** Stops every process, drops the database and deletes the namespace's streams. */
  stop(): Promise<void>;
}

/** Runs `command args` from the repository's root with `env` added, feeding it `stdin`; collects its output. */
export function runProcess(
  command: string,
  args: string[],
  env: Record<string, string | undefined>,
  stdin = "",
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: repoRoot,
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
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
    // A process may exit without reading its input: that is its answer, not an error of ours.
    child.stdin.on("error", () => undefined);
    child.stdin.end(stdin);
  });
}

/** Runs a built script of the repository (`node <script> <args>`). */
export const runScript = (script: string, args: string[], env: Record<string, string>, stdin = "") =>
  runProcess(process.execPath, [script, ...args], env, stdin);

const runCli = (args: string[], env: Record<string, string>, stdin = "") =>
  runScript("apps/cli/dist/main.js", args, env, stdin);

/**
 * Creates the run's streams the way a deployment does: `pnpm bus:migrate` (built) as a process with the
 * run's environment. Services only check that their streams exist.
 */
export async function migrateBus(env: Record<string, string>): Promise<CliResult> {
  const result = await runScript("packages/bus/dist/migrate-cli.js", [], env);
  if (result.code !== 0) {
    throw new Error(`bus:migrate exited ${result.code}: ${result.stderr || result.stdout}`);
  }
  return result;
}

/** Deletes every stream of `namespace` (the bus creates them on connect; a run must not leave them behind). */
export async function deleteNamespaceStreams(natsUrl: string, namespace: string) {
  const nc = await connect({ servers: natsUrl.split(","), name: `${namespace}-cleanup` });
  try {
    const jsm = await jetstreamManager(nc);
    for (const stream of Object.values(busTopology(namespace).streams)) {
      await jsm.streams.delete(stream.name).catch(() => undefined);
    }
  } finally {
    await nc.close();
  }
}

/**
 * The whole system as production processes (`node apps/<app>/dist/main.js`, so build first) on free
 * ports, over the given stores, isolated by a database, bus namespace and Redis key prefix of its own:
 * it never touches a `pnpm dev` session's data, nor another run's.
 */
export async function startLocalSystem<Db extends { $disconnect(): Promise<unknown> }>(
  options: LocalSystemOptions<Db>,
): Promise<LocalSystem<Db>> {
  const { stores, apps = SERVICES, nodeFlags = [], logDir } = options;
  const replicaCount = options.replicas ?? 1;
  const runId = options.runId ?? uniqueId("sb");
  const all: SystemApp[] = ["fake-meta", ...apps];
  const ports = Object.fromEntries(
    await Promise.all(all.map(async (app) => [app, await freePort()] as const)),
  ) as Record<SystemApp, number>;
  const replicaPorts = Object.fromEntries(
    await Promise.all(
      apps.map(async (app) => [
        app,
        [ports[app], ...(await Promise.all(Array.from({ length: replicaCount - 1 }, () => freePort())))],
      ]),
    ),
  ) as Record<ServiceName, number[]>;
  const replicas: Partial<Record<ServiceName, ServiceProcess[]>> = {};
  const live = (app: ServiceName) =>
    (replicas[app] ?? [])
      .filter((p) => p.process.exitCode === null && p.process.signalCode === null)
      .map((p) => p.url);
  const balancer =
    replicaCount > 1 && apps.includes("ingress") ? await startBalancer(() => live("ingress")) : undefined;
  const urls = Object.fromEntries(all.map((app) => [app, `http://127.0.0.1:${ports[app]}`])) as Record<
    SystemApp,
    string
  >;
  if (balancer) urls.ingress = balancer.url;
  const database: IsolatedDatabase = await createIsolatedDatabase(stores.databaseUrl, {
    name: `${options.databasePrefix ?? "sb_"}${runId}`,
    migrate: options.migrate,
  });
  const env: Record<string, string> = {
    NODE_ENV: "production",
    LOG_LEVEL: "info",
    DATABASE_URL: database.url,
    REDIS_URL: stores.redisUrl,
    NATS_URL: stores.natsUrl,
    BUS_NAMESPACE: runId,
    REDIS_KEY_PREFIX: `${runId}:`,
    FB_APP_ID: "100000000000001",
    FB_APP_SECRET: randomBytes(16).toString("hex"),
    FB_VERIFY_TOKEN: `${runId}-verify-token`,
    TOKEN_ENCRYPTION_KEYS: generateTokenKey(runId),
    GRAPH_API_BASE_URL: urls["fake-meta"],
    // The fake's Instagram API: a call an Instagram account makes on the Facebook host (or the reverse) fails.
    INSTAGRAM_API_BASE_URL: `${urls["fake-meta"]}/instagram-api`,
    GRAPH_API_VERSION: "v21.0",
    ...(urls.ingress ? { INGRESS_URL: `${urls.ingress}/webhooks/facebook` } : {}),
    // Reconciliation is tested on its own; a run should see only the subscriptions its steps cause.
    RECONCILE_INTERVAL: "1h",
    // A run's webhook receivers listen on 127.0.0.1 over http (never in production).
    WEBHOOK_ALLOW_PRIVATE_TARGETS: "true",
    ...options.env,
  };
  const fakeMetaControlToken = randomBytes(24).toString("base64url");
  // The fake Meta refuses NODE_ENV=production; it keeps nothing on disk, and its control token is its own.
  const fakeMetaEnv = {
    NODE_ENV: "test",
    FAKE_META_CONTROL_TOKEN: fakeMetaControlToken,
    FAKE_META_STATE_FILE: "",
  };
  const processes: Partial<Record<SystemApp, ServiceProcess>> = {};
  const db = options.connectDb(database.url);
  const stop = async () => {
    await Promise.all(Object.values(processes).map((p) => p.stop()));
    await Promise.all(Object.values(replicas).flatMap((list) => (list ?? []).slice(1).map((p) => p.stop())));
    await balancer?.close();
    await db.$disconnect();
    await database.drop();
    await deleteNamespaceStreams(stores.natsUrl, runId);
    await deleteRedisKeys(stores.redisUrl, env.REDIS_KEY_PREFIX ?? "");
  };
  try {
    await migrateBus(env);
  } catch (error) {
    await stop();
    throw error;
  }
  const startReplica = async (app: SystemApp, index: number) => {
    const fakeMeta = app === "fake-meta";
    const port = fakeMeta ? ports[app] : replicaPorts[app as ServiceName]![index]!;
    const name = index === 0 ? app : `${app}-${index + 1}`;
    const started = await startServiceProcess(app, {
      env: fakeMeta ? { ...env, ...fakeMetaEnv } : env,
      port,
      ...(fakeMeta ? { script: ["--enable-source-maps", "packages/fake-meta/dist/main.js"] } : { nodeFlags }),
      logFile: logDir ? join(logDir, `${name}.log`) : undefined,
      readyPath: fakeMeta ? "/healthz" : "/readyz",
    });
    if (fakeMeta) {
      processes[app] = started;
      return;
    }
    replicas[app as ServiceName] ??= [];
    replicas[app as ServiceName]![index] = started;
    if (index === 0) processes[app] = started;
  };
  const started = await Promise.allSettled(
    all.flatMap((app) =>
      app === "fake-meta"
        ? [startReplica(app, 0)]
        : Array.from({ length: replicaCount }, (_, index) => startReplica(app, index)),
    ),
  );
  const failed = started.find((result) => result.status === "rejected");
  if (failed) {
    await stop();
    throw failed.reason;
  }
  return {
    runId,
    env,
    fakeMetaControlToken,
    databaseUrl: database.url,
    urls,
    processes,
    replicas,
    async killReplica(app, index) {
      const target = replicas[app]?.[index];
      if (!target || target.process.exitCode !== null || target.process.signalCode !== null) return;
      await new Promise<void>((resolve) => {
        target.process.once("exit", () => resolve());
        target.process.kill("SIGKILL");
      });
    },
    startReplica: (app, index) => startReplica(app, index),
    db,
    cli: (args, stdin) => runCli(args, env, stdin),
    metrics: async (app) => (await fetch(`${urls[app]}/metrics`)).text(),
    stop,
  };
}
