import type { BenchSystem } from "./bench-system";
import { type Audience, delivery, type StoredStats, settle, warmUp } from "./e2e-bench";
import { drive, type LoadResult } from "./load";
import { round } from "./resources";

/** One Prometheus sample per `name{labels}` line of a /metrics page. */
async function scrape(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line.startsWith("switchboard_lock_")) continue;
    const space = line.lastIndexOf(" ");
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

function sum(samples: Map<string, number>, prefix: string, labels = ""): number {
  let total = 0;
  for (const [key, value] of samples) if (key.startsWith(prefix) && key.includes(labels)) total += value;
  return total;
}

export interface LockWaits {
  acquired: number;
  /** Acquisitions that queued behind another holder of the same conversation. */
  acquiredAfterWaiting: number;
  /** Attempts that found the lock held in Redis (by another process or an earlier attempt). */
  contended: number;
  failed: number;
  /** Share of acquisitions that waited at most `le` seconds (the lock wait histogram, this run only). */
  waitDistribution: Array<{ le: string; share: number }>;
  /** Lock wait percentiles, as the upper bound of the histogram bucket they fall in. */
  p50Seconds: string;
  p99Seconds: string;
  meanHoldMs: number;
}

function lockWaits(before: Map<string, number>, after: Map<string, number>): LockWaits {
  const delta = (key: string) => (after.get(key) ?? 0) - (before.get(key) ?? 0);
  const buckets = [...after.keys()]
    .filter((k) => k.startsWith("switchboard_lock_wait_seconds_bucket"))
    .map((k) => ({ le: /le="([^"]+)"/.exec(k)?.[1] ?? "?", count: delta(k) }));
  const total = buckets.at(-1)?.count ?? 0;
  const quantile = (q: number) => buckets.find((b) => total > 0 && b.count >= q * total)?.le ?? "n/a";
  const holdSum =
    sum(after, "switchboard_lock_hold_seconds_sum") - sum(before, "switchboard_lock_hold_seconds_sum");
  const holdCount =
    sum(after, "switchboard_lock_hold_seconds_count") - sum(before, "switchboard_lock_hold_seconds_count");
  return {
    acquired: sum(after, "switchboard_lock_acquired_total") - sum(before, "switchboard_lock_acquired_total"),
    acquiredAfterWaiting:
      sum(after, "switchboard_lock_acquired_total", 'waited="true"') -
      sum(before, "switchboard_lock_acquired_total", 'waited="true"'),
    contended:
      sum(after, "switchboard_lock_contended_total") - sum(before, "switchboard_lock_contended_total"),
    failed: sum(after, "switchboard_lock_failed_total") - sum(before, "switchboard_lock_failed_total"),
    waitDistribution: buckets.map((b) => ({ le: b.le, share: total > 0 ? round(b.count / total, 3) : 0 })),
    p50Seconds: quantile(0.5),
    p99Seconds: quantile(0.99),
    meanHoldMs: holdCount > 0 ? round((holdSum / holdCount) * 1000, 2) : 0,
  };
}

export interface ContentionRun extends StoredStats {
  shape: "one hot conversation" | "spread";
  conversations: number;
  messages: number;
  resent: number;
  http: LoadResult;
  locks: LockWaits;
}

/**
 * Part 4: a burst of messages for one conversation (every handler queues on its lock) against the same
 * burst over many conversations of the same page, with the lock metrics of the message-service.
 */
export async function benchContention(
  system: BenchSystem,
  pages: { hot: string; spread: string },
  options: { messages: number; spreadConversations: number; connections: number },
  failures: string[],
): Promise<ContentionRun[]> {
  const runs: ContentionRun[] = [];
  const shapes = [
    { shape: "one hot conversation" as const, pageId: pages.hot, conversations: 1 },
    { shape: "spread" as const, pageId: pages.spread, conversations: options.spreadConversations },
  ];
  for (const { shape, pageId, conversations } of shapes) {
    const audience: Audience = { pages: [pageId], conversations };
    await warmUp(system, audience, failures);
    const burst = delivery(audience, system.appSecret, 1);
    const before = await scrape(system.messageServiceUrl);
    const http = await drive({
      url: system.ingressUrl,
      connections: options.connections,
      amount: options.messages,
      next: (n) => burst.body(n),
      onAnswer: (n, status) => burst.answer(n, status),
    });
    const stats = await settle(system, burst, Date.now());
    const after = await scrape(system.messageServiceUrl);
    runs.push({
      shape,
      conversations,
      messages: options.messages,
      http,
      ...stats,
      locks: lockWaits(before, after),
    });
    if (stats.stored !== stats.expected) {
      failures.push(`contention, ${shape}: ${stats.stored} rows for ${stats.expected} messages sent`);
    }
  }
  return runs;
}
