import type { BenchSystem } from "./bench-system";
import { type Audience, type Delivery, delivery, type StoredStats, settle, warmUp } from "./e2e-bench";
import { drive, type LoadResult, paced } from "./load";
import { type SignedBody, webhookBody } from "./payloads";
import { round } from "./resources";

export interface SoloRun extends StoredStats {
  messagesPerSecond: number;
  seconds: number;
  http: LoadResult;
}

/**
 * One page alone at a fixed message rate (5-entry webhooks, evenly paced): with nobody else waiting the
 * fair share must not shape it, whatever `PAGE_MESSAGE_RATE` says.
 */
export async function benchSoloPage(
  system: BenchSystem,
  pageId: string,
  options: { messagesPerSecond: number; seconds: number },
  failures: string[],
): Promise<SoloRun> {
  const audience: Audience = { pages: [pageId], conversations: 100 };
  await warmUp(system, audience, failures);
  const run = delivery(audience, system.appSecret, 5);
  const http = await paced({
    url: system.ingressUrl,
    rate: options.messagesPerSecond / 5,
    durationSeconds: options.seconds,
    next: (n) => run.body(n),
    onAnswer: (n, status) => run.answer(n, status),
  });
  const stats = await settle(system, run, Date.now());
  exact(`one page alone at ${options.messagesPerSecond} msg/s`, stats, failures);
  return { ...stats, ...options, http };
}

export interface FairnessRun {
  floodEntries: number;
  quietMessagesPerSecond: number;
  flood: StoredStats;
  quiet: StoredStats;
  deadLettered: number;
  floodHttp: LoadResult;
  quietHttp: LoadResult;
}

/**
 * Page A flooded with more entries than the router's ROUTER_MAX_ACK_PENDING while page B sends at a steady
 * rate: B must stay fast, A must be stored whole, nothing may be dead-lettered.
 */
export async function benchFairness(
  system: BenchSystem,
  pages: { flood: string; quiet: string },
  options: { floodEntries: number; quietMessagesPerSecond: number; quietSeconds: number },
  failures: string[],
): Promise<FairnessRun> {
  const floodAudience: Audience = { pages: [pages.flood], conversations: 200 };
  const quietAudience: Audience = { pages: [pages.quiet], conversations: 20 };
  await warmUp(system, floodAudience, failures);
  await warmUp(system, quietAudience, failures);
  const deadBefore = await deadLetters(system);
  const flood = delivery(floodAudience, system.appSecret, 5);
  const quiet = delivery(quietAudience, system.appSecret, 1);
  const [floodHttp, quietHttp] = await Promise.all([
    drive({
      url: system.ingressUrl,
      connections: 16,
      amount: Math.ceil(options.floodEntries / 5),
      next: (n) => flood.body(n),
      onAnswer: (n, status) => flood.answer(n, status),
    }),
    paced({
      url: system.ingressUrl,
      rate: options.quietMessagesPerSecond,
      durationSeconds: options.quietSeconds,
      next: (n) => quiet.body(n),
      onAnswer: (n, status) => quiet.answer(n, status),
    }),
  ]);
  const answeredAt = Date.now();
  const [quietStats, floodStats] = [
    await settle(system, quiet, answeredAt),
    await settle(system, flood, answeredAt),
  ];
  exact("fairness: the quiet page", quietStats, failures);
  exact("fairness: the flooded page", floodStats, failures);
  const deadLettered = (await deadLetters(system)) - deadBefore;
  if (deadLettered > 0) failures.push(`fairness: ${deadLettered} dead letters`);
  return {
    floodEntries: options.floodEntries,
    quietMessagesPerSecond: options.quietMessagesPerSecond,
    flood: floodStats,
    quiet: quietStats,
    deadLettered,
    floodHttp,
    quietHttp,
  };
}

async function deadLetters(system: BenchSystem): Promise<number> {
  const info = await system.bus.jsm.streams.info(system.bus.topology.streams.deadLetter.name);
  return info.state.messages;
}

function exact(name: string, stats: StoredStats, failures: string[]) {
  if (stats.stored !== stats.expected) {
    failures.push(`${name}: ${stats.stored} rows for ${stats.expected} messages`);
  }
}

export interface MetricsRun {
  pages: number;
  services: Array<{ service: string; bytes: number; series: number; medianMs: number; maxMs: number }>;
}

/**
 * /metrics with `pages` distinct pages seen: signed entries for that many pages nobody connected (kept
 * unrouted by the router, counted per page by the ingress), then each service's /metrics read five times.
 */
export async function benchMetricsAtScale(system: BenchSystem, pages: number): Promise<MetricsRun> {
  const perBody = 10;
  const pageOf = (i: number) => String(900_000_000_000_000 + i);
  const bodies = (n: number): SignedBody =>
    webhookBody(
      {
        pageIds: Array.from({ length: perBody }, (_, i) => pageOf(n * perBody + i)),
        psidFor: (pageId) => `${pageId}7`,
        mid: (i) => `m_metrics_${n}_${i}`,
        timestamp: Date.now(),
        metaEscaping: false,
        textIndex: n,
      },
      system.appSecret,
    );
  await drive({ url: system.ingressUrl, connections: 16, amount: Math.ceil(pages / perBody), next: bodies });
  // Until the router has parked them all (its per-page unrouted counter has seen every page).
  const { name } = system.bus.topology.streams.unrouted;
  for (let waited = 0; waited < 300_000; waited += 1000) {
    const info = await system.bus.jsm.streams.info(name);
    if (info.state.messages >= pages) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  const services = [];
  for (const p of system.processes) {
    const times: number[] = [];
    let text = "";
    for (let i = 0; i < 5; i++) {
      const started = performance.now();
      text = await (await fetch(`${p.url}/metrics`)).text();
      times.push(performance.now() - started);
    }
    times.sort((a, b) => a - b);
    services.push({
      service: p.name,
      bytes: Buffer.byteLength(text),
      series: text.split("\n").filter((l) => l && !l.startsWith("#")).length,
      medianMs: round(times[2]!),
      maxMs: round(times[4]!),
    });
  }
  return { pages, services };
}

export type { Delivery };
