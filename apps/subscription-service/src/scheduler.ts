import { createHash } from "node:crypto";
import { type Bus, publishJson } from "@switchboard/bus";
import { type ReconcileJob, reconcileJobId } from "@switchboard/contracts";
import type { Db } from "@switchboard/db";
import type { Logger } from "pino";
import type { SubscriptionMetrics } from "./metrics";

/**
 * Where in each interval a page is checked: a hash of its id, so checks spread evenly over the interval
 * (no burst at the top of each interval) and every replica computes the same moment for the same page.
 */
export function pageOffsetMs(pageId: string, intervalMs: number): number {
  const hash = createHash("sha256").update(pageId).digest();
  return hash.readUInt32BE(0) % intervalMs;
}

export function slotOf(at: number, intervalMs: number): number {
  return Math.floor(at / intervalMs);
}

export interface SchedulerOptions {
  bus: Bus;
  db: Db;
  intervalMs: number;
  log: Logger;
  metrics: SubscriptionMetrics;
  /** How often the scheduler wakes to publish the jobs that came due. */
  tickMs?: number;
  now?: () => number;
}

/**
 * Publishes one reconcile job per active page per interval slot, each at the page's own moment in the
 * slot. Every replica runs this: the job's `Nats-Msg-Id` (`reconcile:<page>:<slot>`) makes the stream
 * keep one of the identical publishes, and the worker's slot claim catches any repeat the stream's
 * duplicate window no longer remembers. So each page is checked once per slot while any replica runs.
 */
export function startReconcileScheduler(options: SchedulerOptions): { stop(): Promise<void> } {
  const { bus, db, intervalMs, log, metrics } = options;
  const now = options.now ?? Date.now;
  const tickMs = options.tickMs ?? Math.max(50, Math.min(1000, Math.floor(intervalMs / 20)));
  // Start from the beginning of the current slot: after a restart the jobs already published are
  // duplicates, and the ones a stopped replica never published are not lost.
  let cursor = slotOf(now(), intervalMs) * intervalMs;
  let slotPages: { slot: number; pages: Array<{ pageId: string; offset: number }> } | undefined;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();

  const pagesOf = async (slot: number) => {
    if (slotPages?.slot !== slot) {
      const pages = await db.pageConnection.findMany({
        where: { status: { in: ["active", "blocked"] } },
        select: { pageId: true },
      });
      slotPages = {
        slot,
        pages: pages.map(({ pageId }) => ({ pageId, offset: pageOffsetMs(pageId, intervalMs) })),
      };
    }
    return slotPages.pages;
  };

  const publishDue = async () => {
    const until = now();
    // A replica paused for longer than an interval catches up the current slot only.
    cursor = Math.max(cursor, slotOf(until, intervalMs) * intervalMs);
    while (cursor < until && !stopped) {
      const slot = slotOf(cursor, intervalMs);
      const slotStart = slot * intervalMs;
      const end = Math.min(until, slotStart + intervalMs);
      for (const { pageId, offset } of await pagesOf(slot)) {
        const at = slotStart + offset;
        if (at < cursor || at >= end) continue;
        const job: ReconcileJob = { pageId, slot, intervalMs, scheduledAt: at };
        const ack = await publishJson(bus.js, bus.topology.subjects.reconcileJob(pageId), job, {
          msgId: reconcileJobId(pageId, slot),
        });
        metrics.jobsScheduled.inc({ result: ack.duplicate ? "duplicate" : "stored" });
      }
      cursor = end;
    }
  };

  const tick = () => {
    running = publishDue()
      .catch((error: unknown) => log.warn({ err: error }, "scheduling reconcile jobs failed"))
      .finally(() => {
        if (!stopped) timer = setTimeout(tick, tickMs);
      });
  };
  tick();

  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
