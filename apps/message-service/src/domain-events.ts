import type { JetStreamClient } from "@nats-io/jetstream";
import { publishJson } from "@switchboard/bus";
import {
  type BusTopology,
  type DomainEvent,
  domainEventId,
  Headers,
  type PageLifecycleEvent,
  type SendRequest,
} from "@switchboard/contracts";
import type { Db, Prisma } from "@switchboard/db";
import type { Logger } from "pino";
import { runPeriodically } from "./periodic-sweep";

export interface OutboxRow {
  /** The `Nats-Msg-Id`: one id per fact, so publishing a row again is dropped by the stream. */
  id: string;
  subject: string;
  /**
   * A fact for the domain stream, a send request for the send worker (queued with its row), or a page's
   * lifecycle event written with the change it announces (Meta blocked the page).
   */
  payload: DomainEvent | SendRequest | PageLifecycleEvent;
}

/** What a row is, for headers and metrics. */
function outboxKind(payload: OutboxRow["payload"]): string {
  return "type" in payload ? payload.type : "send.request";
}

export function outboxRow(topology: BusTopology, event: DomainEvent): OutboxRow {
  return {
    id: domainEventId(event),
    subject: topology.subjects.domainEvent(event.type, event.pageId),
    payload: event,
  };
}

/** A page lifecycle event through the outbox: `msgId` names the change, so it is announced once. */
export function pageLifecycleOutboxRow(
  topology: BusTopology,
  event: PageLifecycleEvent,
  msgId: string,
): OutboxRow {
  return { id: msgId, subject: topology.subjects.pageLifecycle(event.type, event.pageId), payload: event };
}

/** Written in the transaction of the change itself: committed together or not at all. */
export async function writeOutbox(tx: Prisma.TransactionClient, rows: OutboxRow[]): Promise<void> {
  if (rows.length === 0) return;
  // One raw statement for the batch's rows (a typed createMany costs the query compiler each time).
  await tx.$executeRaw`
    INSERT INTO domain_event_outbox (id, subject, payload)
    SELECT id, subject, payload
    FROM jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) AS x(id text, subject text, payload jsonb)
    ON CONFLICT DO NOTHING`;
}

/**
 * Publishes rows (JetStream acknowledges each), then removes them from the outbox. The publishes leave
 * on one connection in row order, so the stream keeps that order; their acks are awaited together.
 */
export async function publishOutbox(js: JetStreamClient, db: Db, rows: OutboxRow[]): Promise<void> {
  if (rows.length === 0) return;
  await publishRows(js, rows);
  await deleteOutboxRows(
    db,
    rows.map((r) => r.id),
  );
}

/**
 * `publishOutbox` for handlers running side by side: rows published while a DELETE is in flight are
 * removed together by the next one, so a burst costs a few statements instead of one per event. Each
 * call still resolves only once its own rows are gone.
 */
export function createOutboxPublisher(js: JetStreamClient, db: Db): (rows: OutboxRow[]) => Promise<void> {
  let queued: { ids: string[]; waiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> } = {
    ids: [],
    waiters: [],
  };
  let deleting = false;

  const drain = async () => {
    deleting = true;
    while (queued.waiters.length > 0) {
      const batch = queued;
      queued = { ids: [], waiters: [] };
      try {
        await deleteOutboxRows(db, batch.ids);
        for (const w of batch.waiters) w.resolve();
      } catch (error) {
        for (const w of batch.waiters) w.reject(error);
      }
    }
    deleting = false;
  };

  return async (rows) => {
    if (rows.length === 0) return;
    await publishRows(js, rows);
    await new Promise<void>((resolve, reject) => {
      queued.ids.push(...rows.map((r) => r.id));
      queued.waiters.push({ resolve, reject });
      if (!deleting) void drain();
    });
  };
}

async function publishRows(js: JetStreamClient, rows: OutboxRow[]): Promise<void> {
  await Promise.all(
    rows.map((row) =>
      publishJson(js, row.subject, row.payload, {
        msgId: row.id,
        headers: { [Headers.eventType]: outboxKind(row.payload), [Headers.pageId]: row.payload.pageId },
      }),
    ),
  );
}

async function deleteOutboxRows(db: Db, ids: string[]): Promise<void> {
  await db.$executeRaw`DELETE FROM domain_event_outbox WHERE id = ANY(${ids}::text[])`;
}

export interface OutboxRelayOptions {
  js: JetStreamClient;
  db: Db;
  log: Logger;
  /** How often to look for rows left behind (a crash or a broker outage between commit and publish). */
  intervalMs: number;
  /** Rows younger than this are still being published by their handler. */
  graceMs?: number;
  batchSize?: number;
  /** The event type published (`send.request` for a queued send). */
  onPublished?: (type: string) => void;
}

/**
 * Publishes outbox rows their handler did not (it crashed, or NATS was down after the commit). Several
 * replicas may publish the same row: the stream drops the repeat by its id.
 */
export function startOutboxRelay(options: OutboxRelayOptions): {
  stop(): Promise<void>;
  sweep(): Promise<number>;
} {
  const { js, db, log, intervalMs } = options;
  const graceMs = options.graceMs ?? Math.max(intervalMs, 1000);
  const batchSize = options.batchSize ?? 500;

  const sweep = async (): Promise<number> => {
    let published = 0;
    for (;;) {
      const rows = await db.domainEventOutbox.findMany({
        where: { createdAt: { lt: new Date(Date.now() - graceMs) } },
        orderBy: { createdAt: "asc" },
        take: batchSize,
      });
      if (rows.length === 0) return published;
      await publishOutbox(
        js,
        db,
        rows.map((r) => ({ id: r.id, subject: r.subject, payload: r.payload as OutboxRow["payload"] })),
      );
      for (const row of rows) options.onPublished?.(outboxKind(row.payload as OutboxRow["payload"]));
      published += rows.length;
      log.info({ published: rows.length }, "outbox rows published by the relay");
      if (rows.length < batchSize) return published;
    }
  };

  return runPeriodically(sweep, intervalMs, log, "outbox sweep");
}
