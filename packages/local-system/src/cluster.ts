import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./ids";

/**
 * Production-shaped stores on one machine, as processes this run owns (the machine's own services keep
 * running): a 3-node NATS JetStream cluster, independent Redis nodes for a Redlock quorum, and a private
 * PostgreSQL that a test may stop. Recipes: shared/environment.md.
 */

export interface ManagedNode {
  name: string;
  /** What clients connect to. */
  url: string;
  running(): boolean;
  /** SIGKILL: the node dies as a crashed machine would. */
  kill(): Promise<void>;
  start(): Promise<void>;
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what} not ready after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function killChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGKILL");
  });
}

export interface NatsCluster {
  nodes: ManagedNode[];
  /** All client URLs, comma-separated: `NATS_URL`. */
  url: string;
  monitorUrls: string[];
  /** The meta leader's name once one is elected. */
  metaLeader(): Promise<string | undefined>;
  /** `num_replicas` of each stream of the account, from a running node's monitoring endpoint. */
  streamReplicas(): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

/** Three (or `size`) nats-server processes with cluster routes and JetStream, each with its own store. */
export async function startNatsCluster(options: { size?: number; name?: string } = {}): Promise<NatsCluster> {
  const size = options.size ?? 3;
  const clusterName = options.name ?? `sb-chaos-${process.pid}`;
  const root = mkdtempSync(join(tmpdir(), "sb-nats-"));
  const ports = await Promise.all(
    Array.from({ length: size }, async () => ({
      client: await freePort(),
      monitor: await freePort(),
      route: await freePort(),
    })),
  );
  const routes = ports.map((p) => `nats://127.0.0.1:${p.route}`).join(",");
  const children: Array<ChildProcess | undefined> = [];
  const nodes: ManagedNode[] = ports.map((p, i) => {
    const name = `n${i + 1}`;
    const start = async () => {
      if (children[i] && children[i]!.exitCode === null && children[i]!.signalCode === null) return;
      const storeDir = join(root, name);
      mkdirSync(storeDir, { recursive: true });
      children[i] = spawn(
        "nats-server",
        [
          "-a",
          "127.0.0.1",
          "-p",
          String(p.client),
          "-m",
          String(p.monitor),
          "-js",
          "-sd",
          storeDir,
          "-n",
          name,
          "--cluster_name",
          clusterName,
          "--cluster",
          `nats://127.0.0.1:${p.route}`,
          "--routes",
          routes,
        ],
        { stdio: "ignore" },
      );
      await waitFor(
        `nats node ${name}`,
        async () => (await fetch(`http://127.0.0.1:${p.monitor}/healthz`)).status < 500,
        15_000,
      );
    };
    return {
      name,
      url: `nats://127.0.0.1:${p.client}`,
      running: () => !!children[i] && children[i]!.exitCode === null && children[i]!.signalCode === null,
      kill: () => killChild(children[i]),
      start,
    };
  });
  const monitorUrls = ports.map((p) => `http://127.0.0.1:${p.monitor}`);
  const jsz = async (query = "") => {
    for (const [i, monitor] of monitorUrls.entries()) {
      if (!nodes[i]!.running()) continue;
      const res = await fetch(`${monitor}/jsz${query}`).catch(() => undefined);
      if (res?.ok) return (await res.json()) as Record<string, unknown>;
    }
    throw new Error("no NATS node answers /jsz");
  };
  const cluster: NatsCluster = {
    nodes,
    url: nodes.map((n) => n.url).join(","),
    monitorUrls,
    async metaLeader() {
      const info = (await jsz()) as { meta_cluster?: { leader?: string } };
      return info.meta_cluster?.leader || undefined;
    },
    async streamReplicas() {
      const info = (await jsz("?accounts=true&streams=true&config=true")) as {
        account_details?: Array<{
          stream_detail?: Array<{ name: string; config?: { num_replicas?: number } }>;
        }>;
      };
      const replicas: Record<string, number> = {};
      for (const account of info.account_details ?? []) {
        for (const stream of account.stream_detail ?? []) {
          replicas[stream.name] = stream.config?.num_replicas ?? 1;
        }
      }
      return replicas;
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.kill()));
      rmSync(root, { recursive: true, force: true });
    },
  };
  try {
    await Promise.all(nodes.map((n) => n.start()));
    await waitFor("NATS meta leader", async () => !!(await cluster.metaLeader()), 30_000);
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}

export interface RedisNodes {
  nodes: ManagedNode[];
  /** The nodes' URLs comma-separated: `REDIS_URL` for a Redlock quorum. */
  url: string;
  stop(): Promise<void>;
}

/** Independent (not replicated) redis-server processes, as Redlock wants them. */
export async function startRedisNodes(count = 3): Promise<RedisNodes> {
  const root = mkdtempSync(join(tmpdir(), "sb-redis-"));
  const children: Array<ChildProcess | undefined> = [];
  const ports = await Promise.all(Array.from({ length: count }, () => freePort()));
  const nodes: ManagedNode[] = ports.map((port, i) => ({
    name: `redis${i + 1}`,
    url: `redis://127.0.0.1:${port}`,
    running: () => !!children[i] && children[i]!.exitCode === null && children[i]!.signalCode === null,
    kill: () => killChild(children[i]),
    async start() {
      if (this.running()) return;
      const dir = join(root, String(i));
      mkdirSync(dir, { recursive: true });
      children[i] = spawn(
        "redis-server",
        ["--bind", "127.0.0.1", "--port", String(port), "--save", "", "--appendonly", "no", "--dir", dir],
        { stdio: "ignore" },
      );
      await waitFor(
        `redis on ${port}`,
        async () => {
          execFileSync("redis-cli", ["-p", String(port), "ping"], { stdio: "ignore" });
          return true;
        },
        10_000,
      );
    },
  }));
  await Promise.all(nodes.map((n) => n.start()));
  return {
    nodes,
    url: nodes.map((n) => n.url).join(","),
    async stop() {
      await Promise.all(nodes.map((n) => n.kill()));
      rmSync(root, { recursive: true, force: true });
    },
  };
}

export interface PrivatePostgres {
  /** A URL to the `postgres` database (createIsolatedDatabase makes the run's own beside it). */
  url: string;
  running(): boolean;
  /** `pg_ctl stop -m immediate`: a crash, no clean shutdown. */
  kill(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

const PG_BIN = process.env.PG_BIN ?? "/usr/lib/postgresql/15/bin";

/** A PostgreSQL cluster of the run's own (initdb as the postgres user, since initdb refuses root). */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const dir = mkdtempSync(join(tmpdir(), "sb-pg-"));
  const port = await freePort();
  const asRoot = process.getuid?.() === 0;
  const run = (command: string) => {
    if (asRoot) execFileSync("su", ["postgres", "-c", command], { stdio: "pipe" });
    else execFileSync("sh", ["-c", command], { stdio: "pipe" });
  };
  if (asRoot) {
    chmodSync(dir, 0o700);
    const uid = Number(execFileSync("id", ["-u", "postgres"]).toString().trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"]).toString().trim());
    chownSync(dir, uid, gid);
  }
  run(`${PG_BIN}/initdb -D ${dir} -A trust -U postgres >/dev/null`);
  let up = false;
  const pg = {
    url: `postgresql://postgres@127.0.0.1:${port}/postgres`,
    running: () => up,
    async start() {
      if (up) return;
      run(
        `${PG_BIN}/pg_ctl -D ${dir} -o "-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" -l ${dir}/log -w start >/dev/null`,
      );
      up = true;
    },
    async kill() {
      if (!up) return;
      run(`${PG_BIN}/pg_ctl -D ${dir} -m immediate -w stop >/dev/null`);
      up = false;
    },
    async stop() {
      if (up) run(`${PG_BIN}/pg_ctl -D ${dir} -m fast -w stop >/dev/null`);
      up = false;
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await pg.start();
  return pg;
}
