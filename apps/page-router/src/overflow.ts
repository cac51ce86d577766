import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import {
  type Bus,
  headersToObject,
  isNotFound,
  type JsMsg,
  publishRaw,
  type RunningConsumer,
  receivedAtOf,
  runConsumer,
} from "@switchboard/bus";
import { Headers } from "@switchboard/contracts";
import type { Logger } from "@switchboard/observability";
import type { FairShare } from "./fair-share";
import type { PageRouterMetrics } from "./metrics";

/**
 * Moves an entry over its page's share to the page's overflow subject. The copy's id comes from the
 * original's stream and sequence, so handling the original again (a crash before its ack) stores no
 * second copy; the original is acknowledged only once the copy is stored (the caller returns after this).
 */
export async function moveToOverflow(bus: Bus, msg: JsMsg, pageId: string) {
  await publishRaw(bus.js, bus.topology.subjects.pageOverflow(pageId), msg.data, {
    msgId: `overflow:${msg.info.stream}:${msg.seq}`,
    headers: {
      ...headersToObject(msg.headers),
      "Nats-Msg-Id": undefined,
      [Headers.originalSubject]: msg.subject,
    },
  });
}

export interface OverflowDrainSettings {
  /** Entries of one page's overflow handled at once by this replica. */
  concurrency: number;
  /** Pages drained at once by this replica; a page beyond waits for another's overflow to empty. */
  maxPages: number;
  /** How often the overflow stream is looked at (pages with entries, the backlog metrics). */
  pollIntervalMs: number;
  /** A page's drain stops after its overflow was empty this long. */
  idleStopMs: number;
  /** Pages shown in the backlog metrics (the largest backlogs): bounded label cardinality. */
  metricPages: number;
  handlerTimeoutMs?: number;
  maxTransientAttempts?: number;
}

/** JetStream removes a page's drain consumer once no replica has pulled from it for this long. */
const DRAIN_CONSUMER_INACTIVE_MS = 60 * 60_000;

/**
 * Drains every page's overflow, each page on its own consumer filtered on its subject (the overflow
 * stream is a work queue): pages are drained side by side, so one page's large overflow never holds
 * another's back, and none of it holds a slot of the shared webhooks consumer. While other pages wait,
 * each entry waits for a slot of its page's share (`awaitShare`); alone, a page's overflow drains at full
 * speed. Drained entries go through the same routing stages as any entry (`route`).
 */
export function startOverflowDrain(deps: {
  bus: Bus;
  log: Logger;
  metrics: PageRouterMetrics;
  fairShare: FairShare;
  settings: OverflowDrainSettings;
  probeDependencies?: () => Promise<void>;
  route: (msg: JsMsg, pageId: string, shared: boolean) => Promise<void>;
  onOutcome: (outcome: string, pageId: string, error?: unknown) => void;
}) {
  const { bus, log, metrics, fairShare, settings } = deps;
  const { streams, subjects, consumers } = bus.topology;
  const stream = streams.overflow.name;
  const subjectPrefix = subjects.pageOverflow("");
  const drains = new Map<string, { consumer: Promise<RunningConsumer>; emptySince?: number }>();
  /** How long the entry drained last per page had waited since the ingress received it (seconds). */
  const lastWait = new Map<string, number>();
  let stopping = false;
  const stopWaiting = new AbortController();

  const createDrainConsumer = async (pageId: string) => {
    const durable = consumers.pageOverflowDrain(pageId);
    try {
      await bus.jsm.consumers.info(stream, durable);
    } catch (error) {
      if (!isNotFound(error)) throw error;
      await bus.jsm.consumers
        .add(stream, {
          durable_name: durable,
          ack_policy: AckPolicy.Explicit,
          deliver_policy: DeliverPolicy.All,
          filter_subject: subjects.pageOverflow(pageId),
          ack_wait: 30_000 * 1_000_000,
          max_deliver: -1,
          max_ack_pending: settings.concurrency * 4,
          inactive_threshold: DRAIN_CONSUMER_INACTIVE_MS * 1_000_000,
        })
        .catch(async (addError: unknown) => {
          // Another replica created it first.
          await bus.jsm.consumers.info(stream, durable).catch(() => {
            throw addError;
          });
        });
    }
    // At most about two seconds of the page's share waiting at once: a waiting entry holds its handler.
    const concurrency = Math.min(
      settings.concurrency,
      Math.max(1, Math.ceil(fairShare.quota.rateOf(pageId) * 2)),
    );
    return runConsumer({
      js: bus.js,
      jsm: bus.jsm,
      topology: bus.topology,
      stream,
      durable,
      filterSubject: subjects.pageOverflow(pageId),
      stage: "page-router",
      log,
      concurrency,
      maxAckPending: settings.concurrency * 4,
      ...(settings.maxTransientAttempts ? { maxTransientAttempts: settings.maxTransientAttempts } : {}),
      ...(settings.handlerTimeoutMs ? { handlerTimeoutMs: settings.handlerTimeoutMs } : {}),
      ...(deps.probeDependencies ? { probeDependencies: deps.probeDependencies } : {}),
      handle: async (msg) => {
        const shared = await fairShare.awaitShare(msg, pageId, stopWaiting.signal);
        const receivedAt = receivedAtOf(msg);
        lastWait.set(pageId, Math.max(0, Date.now() - receivedAt) / 1000);
        await deps.route(msg, pageId, shared);
      },
      onOutcome: (outcome, _msg, error) => {
        if (outcome === "acked") metrics.overflowDrained.inc({ page_id: pageId });
        deps.onOutcome(outcome, pageId, error);
      },
    });
  };

  /** Starts draining a page's overflow on this replica (the shared consumer calls it on each move). */
  const drainPage = (pageId: string) => {
    const running = drains.get(pageId);
    if (running) {
      running.emptySince = undefined;
      return;
    }
    if (stopping || drains.size >= settings.maxPages) return;
    const consumer = createDrainConsumer(pageId);
    consumer.catch((err: unknown) => {
      log.warn({ pageId, err }, "could not drain the page's overflow yet, will try again");
      if (drains.get(pageId)?.consumer === consumer) drains.delete(pageId);
    });
    drains.set(pageId, { consumer });
  };

  const stopDrain = async (pageId: string) => {
    const running = drains.get(pageId);
    drains.delete(pageId);
    lastWait.delete(pageId);
    await (await running?.consumer.catch(() => undefined))?.stop();
  };

  /** Pages with entries in the overflow, from the stream's per-subject counts. */
  const backlog = async () => {
    const info = await bus.jsm.streams.info(stream, { subjects_filter: subjects.pageOverflows });
    return new Map(
      Object.entries(info.state.subjects ?? {}).map(([subject, count]) => [
        subject.slice(subjectPrefix.length),
        count,
      ]),
    );
  };

  const poll = async () => {
    const waiting = await backlog();
    const now = Date.now();
    for (const [pageId, count] of waiting) {
      if (count === 0) continue;
      // A page with an overflow is waiting for the router's capacity like any page with new entries.
      await fairShare.activePages.markActive(pageId).catch(() => undefined);
      drainPage(pageId);
    }
    for (const [pageId, drain] of drains) {
      if ((waiting.get(pageId) ?? 0) > 0) continue;
      drain.emptySince ??= now;
      if (now - drain.emptySince >= settings.idleStopMs) void stopDrain(pageId);
    }
    metrics.overflowEntries.reset();
    metrics.overflowWaitSeconds.reset();
    const largest = [...waiting].sort((a, b) => b[1] - a[1]).slice(0, settings.metricPages);
    for (const [pageId, count] of largest) {
      metrics.overflowEntries.set({ page_id: pageId }, count);
      const wait = lastWait.get(pageId);
      if (wait !== undefined) metrics.overflowWaitSeconds.set({ page_id: pageId }, wait);
    }
  };

  let polling: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    polling = polling
      .then(poll)
      .catch((err: unknown) => log.warn({ err }, "could not read the overflow stream, will try again"));
  }, settings.pollIntervalMs);
  timer.unref();

  return {
    drainPage,
    /** True while this replica drains the page and last saw entries in its overflow. */
    overflowing: (pageId: string) => {
      const drain = drains.get(pageId);
      return drain !== undefined && drain.emptySince === undefined;
    },
    async stop() {
      stopping = true;
      stopWaiting.abort();
      clearInterval(timer);
      await polling;
      await Promise.all([...drains.keys()].map(stopDrain));
    },
  };
}
