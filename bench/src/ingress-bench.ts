import {
  deleteNamespaceStreams,
  freePort,
  migrateBus,
  type ServiceProcess,
  startServiceProcess,
  uniqueId,
} from "@switchboard/local-system";
import { drive, type LoadResult, paced } from "./load";
import { bodyPool, type SignedBody } from "./payloads";
import { type ProcessUsage, pidsNamed, round, sampleResources } from "./resources";
import { logFile, services } from "./system";

export interface IngressBenchOptions {
  seconds: number;
  warmupSeconds: number;
  connections: number;
  poolSize: number;
  /** Extra node flags for the ingress process (e.g. --cpu-prof). */
  nodeFlags?: string[];
}

export interface IngressBenchResult {
  payload: { bodies: number; meanBytes: number; meanEntries: number };
  bareExpress: LoadResult;
  ingress: LoadResult;
  /** The ingress at half its peak rate: the latency Meta sees on a busy but not saturated day. */
  ingressAtHalfPeak: LoadResult & { offeredRate: number };
  ratio: number;
  /**
   * CPU time per request (ms) of each process during the full-speed runs: unlike req/s, this barely moves
   * when other work shares the machine, so it is the figure to compare before and after a change.
   */
  cpuMsPerRequest: { bareExpress: Record<string, number>; ingress: Record<string, number> };
  resources: { bareExpress: Record<string, ProcessUsage>; ingress: Record<string, ProcessUsage> };
}

/** Hands out the pool's bodies in order across runs, so each run sends bodies the stream has not stored yet. */
function cursor(pool: SignedBody[]) {
  let position = 0;
  return () => pool[position++ % pool.length]!;
}

async function measure(
  service: ServiceProcess,
  next: () => SignedBody,
  options: IngressBenchOptions,
  rate?: number,
): Promise<{ load: LoadResult; usage: Record<string, ProcessUsage> }> {
  const url = `${service.url}/webhooks/facebook`;
  const sampler = sampleResources({
    [service.name]: [service.pid],
    "nats-server": pidsNamed("nats-server"),
    "bench (load generator)": [process.pid],
  });
  const load = rate
    ? await paced({ url, rate, durationSeconds: options.seconds, next: () => next() })
    : await drive({
        url,
        connections: options.connections,
        durationSeconds: options.seconds,
        next: () => next(),
      });
  return { load, usage: sampler.stop() };
}

function cpuPerRequest(run: { load: LoadResult; usage: Record<string, ProcessUsage> }) {
  return Object.fromEntries(
    Object.entries(run.usage).map(([name, u]) => [
      name,
      round(((u.cpuPercent / 100) * run.load.durationSeconds * 1000) / Math.max(1, run.load.requests), 3),
    ]),
  );
}

async function warmUp(service: ServiceProcess, next: () => SignedBody, options: IngressBenchOptions) {
  await drive({
    url: `${service.url}/webhooks/facebook`,
    connections: options.connections,
    durationSeconds: options.warmupSeconds,
    next,
  });
}

/**
 * Part 1: the ingress against a bare Express 5 server on the same bodies, each alone on the machine
 * (with NATS), at full speed; then the ingress at half its peak rate for the latency target.
 */
export async function benchIngress(options: IngressBenchOptions): Promise<IngressBenchResult> {
  const appSecret = `bench-${uniqueId("")}`;
  const pages = Array.from({ length: 1000 }, (_, i) => `${600_000_000_000_000 + i}`);
  const pool = bodyPool(options.poolSize, pages, appSecret, uniqueId("i"));
  const payload = {
    bodies: pool.length,
    meanBytes: Math.round(pool.reduce((sum, b) => sum + Buffer.byteLength(b.raw), 0) / pool.length),
    meanEntries: round(pool.reduce((sum, b) => sum + b.messages, 0) / pool.length, 2),
  };

  const bare = await startServiceProcess("bare-express", {
    env: {},
    port: await freePort(),
    script: ["--import", "tsx", "bench/src/bare-express.ts"],
    logFile: logFile("bare-express"),
  });
  let bareRun: Awaited<ReturnType<typeof measure>>;
  try {
    const next = cursor(pool);
    await warmUp(bare, next, options);
    bareRun = await measure(bare, next, options);
  } finally {
    await bare.stop();
  }

  const namespace = uniqueId("bi");
  // As a deployment does: the streams' owner creates them; the ingress only checks they exist.
  await migrateBus({ NATS_URL: services.natsUrl, BUS_NAMESPACE: namespace });
  const ingress = await startServiceProcess("ingress", {
    env: {
      NODE_ENV: "production",
      LOG_LEVEL: "warn",
      NATS_URL: services.natsUrl,
      BUS_NAMESPACE: namespace,
      FB_APP_SECRET: appSecret,
      FB_VERIFY_TOKEN: "bench-verify-token",
    },
    port: await freePort(),
    nodeFlags: options.nodeFlags,
    logFile: logFile("ingress"),
  });
  try {
    const next = cursor(pool);
    await warmUp(ingress, next, options);
    const peak = await measure(ingress, next, options);
    const offeredRate = Math.max(1, Math.round(peak.load.requestsPerSecond / 2));
    const half = await measure(ingress, next, options, offeredRate);
    return {
      payload,
      bareExpress: bareRun.load,
      ingress: peak.load,
      ingressAtHalfPeak: { ...half.load, offeredRate },
      ratio: round(peak.load.requestsPerSecond / bareRun.load.requestsPerSecond, 2),
      cpuMsPerRequest: { bareExpress: cpuPerRequest(bareRun), ingress: cpuPerRequest(peak) },
      resources: { bareExpress: bareRun.usage, ingress: peak.usage },
    };
  } finally {
    await ingress.stop();
    await deleteNamespaceStreams(services.natsUrl, namespace);
  }
}
