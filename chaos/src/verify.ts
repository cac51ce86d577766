import { allReady, runStreamReplicas, streamMessages, type TestBed } from "./bed";
import type { Ledger } from "./load";

export interface ScenarioResult {
  scenario: string;
  sent: number;
  stored: number;
  duplicates: number;
  misattributed: number;
  sendsQueued: number;
  sendsSent: number;
  doubleSends: number;
  sendsMissing: number;
  outOfOrder: number;
  backwards: number;
  deadLetters: number;
  unrouted: number;
  unsubscribed: number;
  streamsNotR3: number;
  /** From the end of the load to every message stored and every send settled. */
  recoverySeconds: number;
  /** From the heal to every replica ready again. */
  readySeconds: number;
  webhookRetries: number;
  /** Incoming messages whose message.created the product's endpoint accepted (at least once). */
  webhooksDelivered: number;
  webhooksMissing: number;
  /** message.created deliveries of one conversation accepted out of the domain stream's order. */
  webhooksOutOfOrder: number;
  /** Deliveries accepted more than once (at least once: the receiver deduplicates on webhook-id). */
  webhooksRedelivered: number;
  ok: boolean;
  problems: string[];
}

const RANK: Record<string, number> = { sending: 0, failed: 0, sent: 1, delivered: 2, read: 3 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until the bed has recovered (every replica ready, every message Meta got a 200 for stored, every
 * queued send settled), then checks every guarantee against the ledger.
 */
export async function verifyScenario(
  bed: TestBed,
  scenario: string,
  ledger: Ledger,
  loadEndedAt: number,
  timeoutMs = 240_000,
): Promise<ScenarioResult> {
  const problems: string[] = [];
  const mids = [...ledger.incoming.keys()];
  const sendIds = ledger.sends.map((s) => s.id);
  const deadline = Date.now() + timeoutMs;
  let recoveredAt: number | undefined;
  for (;;) {
    const ready = await allReady(bed);
    const stored = await count(
      bed,
      `SELECT count(*) FROM messages WHERE direction = 'incoming' AND mid = ANY($1)`,
      [mids],
    );
    const unsettled = await count(
      bed,
      `SELECT count(*) FROM messages WHERE id = ANY($1::uuid[]) AND (status = 'sending' OR mid IS NULL)`,
      [sendIds],
    );
    const undelivered = await count(
      bed,
      `SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'`,
      [],
    );
    // Fan-out may still be behind the stream (a NATS node just came back): wait for the endpoint to have
    // every message, not only for the rows already written to be delivered.
    const notAtEndpoint = ledger.incoming.size - acceptedMids(bed, ledger).size;
    if (ready && stored >= mids.length && unsettled === 0 && undelivered === 0 && notAtEndpoint === 0) {
      recoveredAt = Date.now();
      break;
    }
    if (Date.now() > deadline) {
      problems.push(
        `not recovered within ${timeoutMs / 1000} s: ready=${ready}, stored ${stored}/${mids.length}, ${unsettled} sends unsettled, ${undelivered} webhook deliveries pending, ${notAtEndpoint} messages not at the webhook endpoint`,
      );
      break;
    }
    await sleep(1000);
  }
  // Late effects (a redelivery, a sweeper, a duplicate echo) get a moment to show up before counting.
  await sleep(3000);

  const rows = await bed.sql.query<{ mid: string; page_id: string; n: string }>(
    `SELECT mid, page_id, count(*) AS n FROM messages WHERE direction = 'incoming' AND mid = ANY($1) GROUP BY mid, page_id`,
    [mids],
  );
  const byMid = new Map<string, Array<{ page: string; n: number }>>();
  for (const r of rows.rows)
    byMid.set(r.mid, [...(byMid.get(r.mid) ?? []), { page: r.page_id, n: Number(r.n) }]);
  let stored = 0;
  let duplicates = 0;
  let misattributed = 0;
  for (const [mid, pageId] of ledger.incoming) {
    const found = byMid.get(mid) ?? [];
    const total = found.reduce((sum, f) => sum + f.n, 0);
    if (total > 0) stored++;
    if (total > 1) duplicates += total - 1;
    if (found.some((f) => f.page !== pageId)) misattributed++;
  }
  if (stored < mids.length) problems.push(`${mids.length - stored} incoming messages lost`);
  if (duplicates > 0) problems.push(`${duplicates} incoming messages stored twice`);
  if (misattributed > 0) problems.push(`${misattributed} incoming messages under the wrong page`);

  // Each queued send reached the Send API exactly once (the fake Meta's log, by metadata).
  const sentLog = (await (await bed.control("/messages")).json()) as Array<{
    psid: string;
    body: { message?: { metadata?: string } };
  }>;
  const calls = new Map<string, number>();
  const sentOrder = new Map<string, string[]>();
  for (const m of sentLog) {
    const id = m.body.message?.metadata;
    if (!id) continue;
    calls.set(id, (calls.get(id) ?? 0) + 1);
    sentOrder.set(m.psid, [...(sentOrder.get(m.psid) ?? []), id]);
  }
  const sendRows = await bed.sql.query<{ id: string; status: string; psid: string; queue_seq: string }>(
    `SELECT m.id::text, m.status, c.psid, m.queue_seq FROM messages m
       JOIN conversations v ON v.id = m.conversation_id JOIN contacts c ON c.id = v.contact_id
      WHERE m.id = ANY($1::uuid[]) ORDER BY m.queue_seq`,
    [sendIds],
  );
  let sendsSent = 0;
  let doubleSends = 0;
  let sendsMissing = 0;
  for (const row of sendRows.rows) {
    const n = calls.get(row.id) ?? 0;
    if (n > 1) doubleSends += n - 1;
    if (n === 0) sendsMissing++;
    if (RANK[row.status]! >= 1) sendsSent++;
  }
  if (sendRows.rows.length < sendIds.length)
    problems.push(`${sendIds.length - sendRows.rows.length} queued sends have no row`);
  if (sendsSent < sendIds.length) problems.push(`${sendIds.length - sendsSent} sends not sent`);
  if (doubleSends > 0) problems.push(`${doubleSends} sends reached Meta twice`);
  if (sendsMissing > 0) problems.push(`${sendsMissing} sends never reached Meta`);

  // Sends to one person left in the order they were queued.
  let outOfOrder = 0;
  const queuedOrder = new Map<string, string[]>();
  for (const row of sendRows.rows) queuedOrder.set(row.psid, [...(queuedOrder.get(row.psid) ?? []), row.id]);
  for (const [psid, queued] of queuedOrder) {
    const mine = new Set(queued);
    const order = (sentOrder.get(psid) ?? []).filter((id, i, all) => mine.has(id) && all.indexOf(id) === i);
    for (let i = 0; i < Math.min(order.length, queued.length); i++) if (order[i] !== queued[i]) outOfOrder++;
  }
  if (outOfOrder > 0) problems.push(`${outOfOrder} sends left out of queue order`);

  // Statuses never backwards: each message's status changes, in stream order, only move right.
  const backwards = await statusesBackwards(bed, new Set(sendIds));
  if (backwards > 0) problems.push(`${backwards} status changes went backwards`);

  const deadLetters = await streamMessages(bed, "deadLetter");
  if (deadLetters > 0) problems.push(`${deadLetters} dead letters`);
  const unrouted = await streamMessages(bed, "unrouted");
  if (unrouted > 0) problems.push(`${unrouted} entries unrouted`);
  const unsubscribed = await count(
    bed,
    `SELECT count(*) FROM page_connections p LEFT JOIN page_subscriptions s ON s.page_id = p.page_id
      WHERE s.status IS DISTINCT FROM 'subscribed'`,
    [],
  );
  if (unsubscribed > 0) problems.push(`${unsubscribed} pages not subscribed`);
  const webhooks = await checkWebhooks(bed, ledger);
  problems.push(...webhooks.problems);
  const replicas = await runStreamReplicas(bed);
  const expected = Object.keys(bed.bus.topology.streams).length;
  const streamsNotR3 = replicas.filter((r) => r !== 3).length + Math.max(0, expected - replicas.length);
  if (streamsNotR3 > 0) problems.push(`${streamsNotR3} streams not R3`);

  return {
    scenario,
    sent: mids.length,
    stored,
    duplicates,
    misattributed,
    sendsQueued: sendIds.length,
    sendsSent,
    doubleSends,
    sendsMissing,
    outOfOrder,
    backwards,
    deadLetters,
    unrouted,
    unsubscribed,
    streamsNotR3,
    recoverySeconds: recoveredAt
      ? Math.max(0, Math.round((recoveredAt - loadEndedAt) / 100) / 10)
      : Number.NaN,
    readySeconds: 0,
    webhookRetries: ledger.webhookRetries,
    webhooksDelivered: webhooks.delivered,
    webhooksMissing: webhooks.missing,
    webhooksOutOfOrder: webhooks.outOfOrder,
    webhooksRedelivered: webhooks.redelivered,
    ok: problems.length === 0,
    problems,
  };
}

async function count(bed: TestBed, query: string, params: unknown[]): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    try {
      const result = await bed.sql.query<{ count: string }>(query, params);
      return Number(result.rows[0]?.count ?? 0);
    } catch (error) {
      // The bed's own PostgreSQL may be the fault being injected: ask again.
      if (attempt > 60) throw error;
      await sleep(1000);
    }
  }
}

async function statusesBackwards(bed: TestBed, ids: Set<string>): Promise<number> {
  const { listStored } = await import("@switchboard/bus");
  const { streams, namespace } = bed.bus.topology;
  const stored = await listStored(
    bed.bus.js,
    bed.bus.jsm,
    streams.domain.name,
    `${namespace}.domain.message_status_changed.*`,
    500_000,
  );
  const last = new Map<string, number>();
  let backwards = 0;
  for (const message of stored) {
    const event = JSON.parse(new TextDecoder().decode(message.data)) as { messageId: string; status: string };
    if (!ids.has(event.messageId)) continue;
    const rank = RANK[event.status] ?? 0;
    if (rank <= (last.get(event.messageId) ?? -1)) backwards++;
    last.set(event.messageId, Math.max(rank, last.get(event.messageId) ?? -1));
  }
  return backwards;
}

/**
 * Outbound webhooks: every incoming message of the scenario reached the product's endpoint (verified with
 * the `standardwebhooks` package), each conversation's in the domain stream's order, nothing failed for
 * good, no signature refused.
 */
/** The scenario's incoming mids whose message.created the product's endpoint accepted. */
function acceptedMids(bed: TestBed, ledger: Ledger): Set<string> {
  const mids = new Set<string>();
  for (const delivery of bed.receiver.accepted) {
    const mid = delivery.data.mid;
    if (delivery.type === "message.created" && mid && ledger.incoming.has(mid)) mids.add(mid);
  }
  return mids;
}

async function checkWebhooks(bed: TestBed, ledger: Ledger) {
  const problems: string[] = [];
  const firstAccepted = new Map<string, number>(); // mid → index of its first accepted delivery
  const acceptedIds = new Map<string, number>();
  bed.receiver.accepted.forEach((delivery, index) => {
    acceptedIds.set(delivery.webhookId, (acceptedIds.get(delivery.webhookId) ?? 0) + 1);
    const mid = delivery.data.mid;
    if (delivery.type === "message.created" && mid && ledger.incoming.has(mid) && !firstAccepted.has(mid)) {
      firstAccepted.set(mid, index);
    }
  });
  const delivered = firstAccepted.size;
  const missing = ledger.incoming.size - delivered;
  if (missing > 0) problems.push(`${missing} incoming messages never reached the webhook endpoint`);
  const redelivered = [...acceptedIds.values()].reduce((sum, n) => sum + n - 1, 0);

  // The stream's order of each conversation's message.created, as the dispatcher recorded it.
  const rows = await bed.sql.query<{ mid: string; ordering_key: string }>(
    `SELECT body::jsonb -> 'data' ->> 'mid' AS mid, ordering_key FROM webhook_deliveries
      WHERE endpoint_id = $1::uuid AND event_type = 'message.created' ORDER BY stream_seq`,
    [bed.endpointId],
  );
  const byConversation = new Map<string, string[]>();
  for (const row of rows.rows) {
    if (!firstAccepted.has(row.mid)) continue;
    byConversation.set(row.ordering_key, [...(byConversation.get(row.ordering_key) ?? []), row.mid]);
  }
  let outOfOrder = 0;
  for (const streamOrder of byConversation.values()) {
    const acceptedOrder = [...streamOrder].sort((a, b) => firstAccepted.get(a)! - firstAccepted.get(b)!);
    for (let i = 0; i < streamOrder.length; i++) if (streamOrder[i] !== acceptedOrder[i]) outOfOrder++;
  }
  if (outOfOrder > 0) problems.push(`${outOfOrder} webhook deliveries out of conversation order`);
  const failed = await count(
    bed,
    `SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1::uuid AND status = 'failed'`,
    [bed.endpointId],
  );
  if (failed > 0) problems.push(`${failed} webhook deliveries failed for good`);
  if (bed.receiver.badSignatures() > 0) {
    problems.push(`${bed.receiver.badSignatures()} webhook deliveries with a signature that does not verify`);
  }
  return { delivered, missing, outOfOrder, redelivered, problems };
}
