import { type Bus, publishJson } from "@switchboard/bus";
import { Headers, type Platform, type SendRequest, sendRequestMsgId } from "@switchboard/contracts";
import type { Db } from "@switchboard/db";
import type { Logger } from "pino";
import { runPeriodically } from "../periodic-sweep";

export interface SendSweeperOptions {
  db: Db;
  bus: Bus;
  log: Logger;
  /** How often to look (default 1 min). */
  intervalMs?: number;
  /** A `sending` row untouched this long has lost its request (default 5 min). */
  staleAfterMs?: number;
  batchSize?: number;
  onRequeued?: (count: number) => void;
}

/**
 * Finds `sending` rows whose request is gone — the process died between commit and publish and the
 * outbox relay has not run, the work queue's max age dropped it, an operator purged the stream — and
 * queues them again. The worker decides from the row whether Meta is called, so a request that was not
 * lost after all only costs a delivery. Rows are claimed with SKIP LOCKED: replicas share the work.
 */
export function startSendSweeper(options: SendSweeperOptions) {
  const { db, bus, log } = options;
  const intervalMs = options.intervalMs ?? 60_000;
  const staleAfterMs = options.staleAfterMs ?? 5 * 60_000;
  const batchSize = options.batchSize ?? 200;

  const sweep = async (): Promise<number> => {
    const cutoff = new Date(Date.now() - staleAfterMs);
    const stale = await db.$queryRaw<
      Array<{ id: string; page_id: string; platform: Platform; psid: string }>
    >`
      WITH stale AS (
        SELECT m.id FROM messages m
        WHERE m.status = 'sending' AND m.direction = 'outgoing' AND m.mid IS NULL
          AND m.updated_at < ${cutoff}::timestamptz
          AND NOT EXISTS (SELECT 1 FROM domain_event_outbox o WHERE o.id = 'send-request:' || m.id::text)
        ORDER BY m.updated_at
        LIMIT ${batchSize}
        FOR UPDATE OF m SKIP LOCKED)
      UPDATE messages m SET updated_at = now()
      FROM stale, conversations v, contacts c
      WHERE m.id = stale.id AND v.id = m.conversation_id AND c.id = v.contact_id
      RETURNING m.id::text AS id, m.page_id, m.platform::text AS platform, c.psid`;
    for (const row of stale) {
      const request: SendRequest = {
        messageId: row.id,
        pageId: row.page_id,
        platform: row.platform,
        psid: row.psid,
        origin: "api",
        requestedAt: Date.now(),
        traceId: `sweep-${row.id}`,
      };
      await publishJson(bus.js, bus.topology.subjects.sendRequest(row.page_id), request, {
        msgId: sendRequestMsgId(row.id, Date.now()),
        headers: { [Headers.pageId]: row.page_id, [Headers.traceId]: request.traceId },
      });
    }
    if (stale.length > 0) {
      log.warn({ requeued: stale.length }, "sends whose request was lost queued again");
      options.onRequeued?.(stale.length);
    }
    return stale.length;
  };

  return runPeriodically(sweep, intervalMs, log, "send sweep");
}
