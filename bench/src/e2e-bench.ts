import { eventually, uniqueId } from "@switchboard/local-system";
import type { BenchSystem } from "./bench-system";
import { drive, type LoadResult, paced } from "./load";
import { type SignedBody, webhookBody } from "./payloads";
import { type ProcessUsage, pidsNamed, round, sampleResources } from "./resources";

/** Who talks to whom: `conversations` users spread evenly over `pages` pages. */
export interface Audience {
  pages: string[];
  conversations: number;
}

/** PSIDs are page-scoped, and unique here across pages too (the fake Meta files users by PSID alone). */
const psidOf = (audience: Audience, conversation: number) => {
  const pageId = audience.pages[conversation % audience.pages.length]!;
  const user = Math.floor(conversation / audience.pages.length);
  return { pageId, psid: `${pageId}${String(user).padStart(4, "0")}` };
};

export function audienceUsers(audience: Audience) {
  return Array.from({ length: audience.conversations }, (_, c) => psidOf(audience, c));
}

export interface Delivery {
  /** Webhook n's body: 1–5 entries, one text message each, round robin over the audience's conversations. */
  body(n: number): SignedBody;
  runId: string;
  /** Messages (= rows to expect) in the bodies built so far. */
  messages(): number;
  /** Bodies not answered 2xx (refused, timed out, never answered). */
  unanswered(): SignedBody[];
  answer(n: number, status: number): void;
}

export function delivery(audience: Audience, appSecret: string, entriesPerBody?: number): Delivery {
  const runId = uniqueId("r");
  const bodies: SignedBody[] = [];
  const answered = new Set<number>();
  let message = 0;
  return {
    runId,
    body(n) {
      const entries = entriesPerBody ?? 1 + (n % 5);
      const parties = Array.from({ length: entries }, () =>
        psidOf(audience, message++ % audience.conversations),
      );
      const body = webhookBody(
        {
          pageIds: parties.map((p) => p.pageId),
          psidFor: (_pageId, i) => parties[i]!.psid,
          mid: (i) => `m_${runId}_${n}_${i}`,
          // Meta's timestamp is when the user sent it: now, as the webhook leaves.
          timestamp: Date.now(),
          metaEscaping: n % 2 === 0,
          textIndex: n,
        },
        appSecret,
      );
      bodies[n] = body;
      return body;
    },
    messages: () => bodies.reduce((sum, b) => sum + (b?.messages ?? 0), 0),
    unanswered: () => bodies.filter((b, n) => b && !answered.has(n)),
    answer(n, status) {
      if (status >= 200 && status < 300) answered.add(n);
    },
  };
}

export interface StoredStats {
  expected: number;
  stored: number;
  /** Meta timestamp → row created (the message-service's transaction), ms. */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Rows over the time from the first Meta timestamp to the last row. */
  storedPerSecond: number;
  /** From the last HTTP answer to the last row. */
  drainSeconds: number;
}

async function storedRows(system: BenchSystem, runId: string) {
  const { rows } = await system.sql.query<{
    count: string;
    p50: number | null;
    p99: number | null;
    max: number | null;
    span: number | null;
    last: Date | null;
  }>(
    `SELECT count(*) AS count,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50,
            percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99,
            max(ms) AS max,
            extract(epoch FROM max(created_at) - min(sent_at)) AS span,
            max(created_at) AS last
       FROM (SELECT sent_at, created_at, extract(epoch FROM created_at - sent_at) * 1000 AS ms
               FROM messages WHERE mid LIKE $1) m`,
    [`m\\_${runId}\\_%`],
  );
  return rows[0]!;
}

/**
 * Sends what was not answered 2xx again, as Meta retries, then waits until the rows stop coming.
 * Exactly `expected` rows must exist, else the run has lost or duplicated messages.
 */
export async function settle(
  system: BenchSystem,
  run: Delivery,
  answeredAt: number,
): Promise<StoredStats & { resent: number }> {
  const retries = run.unanswered();
  for (const body of retries) {
    await eventually(
      async () => {
        const res = await fetch(system.ingressUrl, {
          method: "POST",
          headers: { "content-type": "application/json", "x-hub-signature-256": body.signature },
          body: body.raw,
        }).catch(() => undefined);
        return res?.ok;
      },
      { timeoutMs: 30_000, intervalMs: 500, message: "a retried webhook to be accepted" },
    );
  }
  const expected = run.messages();
  let last = -1;
  let lastChange = Date.now();
  for (;;) {
    const { count } = await storedRows(system, run.runId);
    const stored = Number(count);
    if (stored >= expected) break;
    if (stored !== last) {
      last = stored;
      lastChange = Date.now();
    } else if (Date.now() - lastChange > 30_000) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  // A duplicate would arrive after the original: look once more.
  await new Promise((r) => setTimeout(r, 500));
  const stats = await storedRows(system, run.runId);
  const stored = Number(stats.count);
  return {
    expected,
    stored,
    resent: retries.length,
    p50Ms: round(stats.p50 ?? 0),
    p99Ms: round(stats.p99 ?? 0),
    maxMs: round(stats.max ?? 0),
    storedPerSecond: round(stored / Math.max(0.001, Number(stats.span ?? 0))),
    drainSeconds: round(Math.max(0, ((stats.last?.getTime() ?? answeredAt) - answeredAt) / 1000), 2),
  };
}

export interface E2eRun extends StoredStats {
  pages: number;
  conversations: number;
  mode: "full speed" | "fixed rate";
  offeredWebhooksPerSecond?: number;
  webhooks: number;
  resent: number;
  http: LoadResult;
}

export interface E2eBenchOptions {
  pageCounts: number[];
  conversations: number;
  /** Webhooks of the full-speed run. */
  webhooks: number;
  fixedRateSeconds: number;
  connections: number;
}

export interface E2eBenchResult {
  runs: E2eRun[];
  /** Messages stored outside the measured runs (warm-ups), while the resources were sampled. */
  warmupMessages: number;
  resources: Record<string, ProcessUsage>;
  failures: string[];
}

export function pipelinePids(system: BenchSystem): Record<string, number[] | (() => number[])> {
  return {
    ...Object.fromEntries(system.processes.map((p) => [p.name, [p.pid]])),
    "nats-server": pidsNamed("nats-server"),
    "redis-server": pidsNamed("redis-server"),
    "postgres (all processes)": () => pidsNamed("postgres"),
    "bench (load generator)": [process.pid],
  };
}

/**
 * One message from every user of the audience, stored before measuring: their contacts, conversations and
 * cached profiles exist, as for most messages on a normal day.
 */
export async function warmUp(system: BenchSystem, audience: Audience, failures: string[]): Promise<number> {
  await system.addUsers(audienceUsers(audience));
  const warm = delivery(audience, system.appSecret, 5);
  await drive({
    url: system.ingressUrl,
    connections: 8,
    amount: Math.ceil(audience.conversations / 5),
    next: (n) => warm.body(n),
    onAnswer: (n, status) => warm.answer(n, status),
  });
  const warmed = await settle(system, warm, Date.now());
  if (warmed.stored !== warmed.expected) {
    failures.push(
      `warm-up of ${audience.conversations} conversations: ${warmed.stored} rows for ${warmed.expected} messages`,
    );
  }
  return warmed.stored;
}

function checkExact(run: E2eRun, failures: string[]) {
  if (run.stored !== run.expected) {
    failures.push(
      `${run.mode} over ${run.pages} page(s): ${run.stored} rows for ${run.expected} messages sent (${run.stored < run.expected ? "lost" : "duplicated"} ${Math.abs(run.expected - run.stored)})`,
    );
  }
}

/**
 * Part 3: N signed webhooks over P pages, at full speed and then at half the stored rate it reached,
 * each message counted in Postgres. Every conversation has written once before (a warm-up), as on a
 * normal day most messages come from people the system already knows.
 */
export async function benchEndToEnd(
  system: BenchSystem,
  allPages: string[],
  options: E2eBenchOptions,
  log: (line: string) => void,
): Promise<E2eBenchResult> {
  const runs: E2eRun[] = [];
  const failures: string[] = [];
  const sampler = sampleResources(pipelinePids(system));
  let warmupMessages = 0;
  // The processes' JIT and PostgreSQL's caches warm up before the first measured run, not during it:
  // otherwise the first page count (1 page) measures a cold system and the flatness compares unlike runs.
  {
    const first = options.pageCounts[0] ?? 1;
    const audience: Audience = {
      pages: allPages.slice(0, first),
      conversations: Math.max(options.conversations, first),
    };
    warmupMessages += await warmUp(system, audience, failures);
    log("end to end, warming the system up (not measured)");
    const warm = delivery(audience, system.appSecret);
    await drive({
      url: system.ingressUrl,
      connections: options.connections,
      amount: options.webhooks,
      next: (n) => warm.body(n),
      onAnswer: (n, status) => warm.answer(n, status),
    });
    const warmed = await settle(system, warm, Date.now());
    warmupMessages += warmed.stored;
  }
  for (const pageCount of options.pageCounts) {
    // At least one conversation per page: a run over 10,000 pages reaches every one of them.
    const conversations = Math.max(options.conversations, pageCount);
    const audience: Audience = { pages: allPages.slice(0, pageCount), conversations };
    warmupMessages += await warmUp(system, audience, failures);

    log(`end to end, ${pageCount} page(s), full speed`);
    const full = delivery(audience, system.appSecret);
    const http = await drive({
      url: system.ingressUrl,
      connections: options.connections,
      amount: options.webhooks,
      next: (n) => full.body(n),
      onAnswer: (n, status) => full.answer(n, status),
    });
    const fullRun: E2eRun = {
      pages: pageCount,
      conversations,
      mode: "full speed",
      webhooks: options.webhooks,
      http,
      ...(await settle(system, full, Date.now())),
    };
    runs.push(fullRun);
    checkExact(fullRun, failures);

    const rate = Math.max(1, Math.round(fullRun.storedPerSecond / 2 / 3));
    log(`end to end, ${pageCount} page(s), ${rate} webhooks/s`);
    const steady = delivery(audience, system.appSecret);
    const steadyHttp = await paced({
      url: system.ingressUrl,
      rate,
      durationSeconds: options.fixedRateSeconds,
      next: (n) => steady.body(n),
      onAnswer: (n, status) => steady.answer(n, status),
    });
    const steadyRun: E2eRun = {
      pages: pageCount,
      conversations,
      mode: "fixed rate",
      offeredWebhooksPerSecond: rate,
      webhooks: Math.round(rate * options.fixedRateSeconds),
      http: steadyHttp,
      ...(await settle(system, steady, Date.now())),
    };
    runs.push(steadyRun);
    checkExact(steadyRun, failures);
  }
  return { runs, warmupMessages, resources: sampler.stop(), failures };
}
