import {
  type Bus,
  headersToObject,
  type JsMsg,
  listStored,
  publishRaw,
  replayStored,
} from "@switchboard/bus";
import { unroutedHeaders } from "@switchboard/contracts";
import type { Db } from "@switchboard/db";
import type { Logger } from "@switchboard/observability";
import type { Redis } from "ioredis";
import type { PageRouterMetrics } from "./metrics";

/**
 * Why an entry was parked. The first two clear up by themselves when the page is connected;
 * `platform_mismatch` (an Instagram entry for a Page's id, or the reverse) needs an operator.
 */
export type UnroutedReason = "unknown_page" | "page_disabled" | "undecodable" | "platform_mismatch";
const REPLAYED_ON_CONNECT: ReadonlySet<string> = new Set(["unknown_page", "page_disabled"]);

/** The reason code of a stored entry (`undecodable: <detail>` → `undecodable`). */
export function reasonCode(reason: string | undefined): string {
  return (reason ?? "").split(":")[0]!.trim();
}

/**
 * Keeps an entry no page can take on the unrouted stream, with the reason and where it came from, so it
 * can be replayed to the same subject. The id makes a redelivery of the same webhook message park it once.
 */
export async function parkEntry(
  bus: Bus,
  msg: JsMsg,
  pageId: string,
  reason: UnroutedReason,
  detail?: string,
  /** Where a replay sends it: the webhooks subject, also for an entry taken from its page's overflow. */
  originalSubject = msg.subject,
) {
  await publishRaw(bus.js, bus.topology.subjects.unrouted(pageId), msg.data, {
    msgId: `unrouted:${msg.info.stream}:${msg.seq}`,
    headers: {
      ...headersToObject(msg.headers),
      "Nats-Msg-Id": undefined,
      ...unroutedHeaders({
        pageId,
        reason: detail ? `${reason}: ${detail}` : reason,
        originalSubject,
      }),
    },
  });
}

export interface UnroutedReplayer {
  /** Sends a page's parked unknown/disabled entries back to the webhooks stream. */
  replayPage(pageId: string): Promise<number>;
  /** Replays the parked entries of every page that is now active (covers lifecycle events this replica missed). */
  sweep(): Promise<number>;
  /** Waits for replays in progress (shutdown). */
  idle(): Promise<void>;
}

export function createUnroutedReplayer(deps: {
  bus: Bus;
  db: Db;
  redis: Redis;
  keyPrefix: string;
  log: Logger;
  metrics: PageRouterMetrics;
}): UnroutedReplayer {
  const { bus, db, redis, log, metrics } = deps;
  const { streams, subjects } = bus.topology;
  const running = new Set<Promise<unknown>>();
  const subjectPrefix = subjects.unrouted("");

  const track = <T>(work: Promise<T>) => {
    running.add(work);
    void work.finally(() => running.delete(work)).catch(() => undefined);
    return work;
  };

  const replayPage = async (pageId: string) => {
    // Every replica hears `page.connected`; one of them replays. Without Redis each does, and the
    // webhooks stream drops the repeats (same replay message id).
    const lock = `${deps.keyPrefix}unrouted:replay:${pageId}`;
    const claimed = await redis.set(lock, "1", "PX", 30_000, "NX").catch(() => "OK");
    if (claimed !== "OK") return 0;
    try {
      const stored = await listStored(bus.js, bus.jsm, streams.unrouted.name, subjects.unrouted(pageId));
      const waiting = stored.filter((m) => REPLAYED_ON_CONNECT.has(reasonCode(m.reason)));
      if (waiting.length === 0) return 0;
      const { replayed, failed } = await replayStored(bus.js, bus.jsm, streams.unrouted.name, waiting);
      metrics.unroutedReplayed.inc({ page_id: pageId }, replayed);
      log.info({ pageId, replayed, failed }, "replayed unrouted entries of a connected page");
      return replayed;
    } finally {
      await redis.del(lock).catch(() => undefined);
    }
  };

  const sweep = async () => {
    const info = await bus.jsm.streams.info(streams.unrouted.name, { subjects_filter: subjects.unroutedAll });
    const pageIds = Object.keys(info.state.subjects ?? {})
      .map((subject) => subject.slice(subjectPrefix.length))
      .filter((id) => /^\d+$/.test(id));
    if (pageIds.length === 0) return 0;
    const active = await db.pageConnection.findMany({
      where: { pageId: { in: pageIds }, status: { not: "disabled" } },
      select: { pageId: true },
    });
    let total = 0;
    for (const { pageId } of active) total += await replayPage(pageId);
    return total;
  };

  return {
    replayPage: (pageId) => track(replayPage(pageId)),
    sweep: () => track(sweep()),
    async idle() {
      await Promise.allSettled([...running]);
    },
  };
}
