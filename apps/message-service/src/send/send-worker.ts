import {
  type Bus,
  decodeMessage,
  type JsMsg,
  PermanentError,
  RetryLaterError,
  runConsumer,
} from "@switchboard/bus";
import { type DomainEvent, laterOutgoingStatus, SendRequest } from "@switchboard/contracts";
import type { TokenCipher } from "@switchboard/crypto";
import { type Db, isUniqueViolation, type Message, type Prisma } from "@switchboard/db";
import { type GraphClients, type SendMessageBody, TransientGraphError } from "@switchboard/graph-api";
import { Counter, Histogram, LATENCY_BUCKETS, type Registry } from "@switchboard/observability";
import { createPageQuota } from "@switchboard/page-quota";
import { readPageToken, setPageStatus } from "@switchboard/pages";
import type { OutgoingPayload } from "@switchboard/send-queue";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { ConversationLock } from "../conversation-lock";
import { type OutboxRow, outboxRow, publishOutbox, writeOutbox } from "../domain-events";
import { sameSentText } from "../echo-text";
import { explainSendFailure } from "./send-failure";

export interface SendWorkerOptions {
  bus: Bus;
  db: Db;
  lock: ConversationLock;
  /** Pages through the Graph API, Instagram accounts through the Instagram API. */
  graphs: GraphClients;
  cipher: TokenCipher;
  /** For the per-page send schedule, shared by every replica (a failover client over the Redis nodes). */
  redis: Redis;
  redisKeyPrefix?: string;
  log: Logger;
  registry?: Registry;
  /** Send API calls per page per second, across replicas. */
  ratePerPagePerSecond?: number;
  concurrency?: number;
  /** Send API calls of one message that failed (known failed, retryable) before it fails for good. */
  maxAttempts?: number;
  /** After a call whose outcome is unknown, how long to wait for its echo before reading the thread. */
  echoWaitMs?: number;
  /** How long one Send API call can take (the Graph client's timeout): an attempt younger is in flight. */
  graphTimeoutMs?: number;
  /** A message still unsent this long after it was queued is failed (Meta's 24 h window is long gone). */
  giveUpAfterMs?: number;
  /** Checks the database and Redis: an outage pauses the worker instead of spending attempts. */
  probeDependencies?: () => Promise<void>;
}

/** Outcome of one delivery of a request, for the log and the metrics. */
type Settled = "sent" | "failed" | "skipped";

/**
 * Sends queued messages through the Send API, each exactly once, in the order they were queued per person.
 *
 * The `messages` row is the truth, never the request (a request may be delivered twice, re-queued by the
 * sweeper, or redelivered after a crash):
 * 1. a row no longer `sending` is done; an earlier send to the same person still `sending` goes first;
 * 2. the page's send schedule gives the message a slot (once: the slot is kept in Redis) — a throttled
 *    message waits for its slot, which costs no attempt;
 * 3. under the conversation lock (briefly: never across the Graph call) the attempt is recorded on the row
 *    (`send_attempt_started_at`) before Meta is called;
 * 4. Meta's answer records `sent` with the mid; a call known to have failed clears the attempt (retried or
 *    failed); an unknown outcome (timeout, dropped connection, crash, a failed commit after Meta answered)
 *    leaves the attempt on the row, and the next delivery resolves it: by the echo (which confirms the row
 *    by its `metadata`) or, once the echo is overdue, by reading the thread from the Graph API. Only a call
 *    known not to have gone out is made again.
 */
export async function startSendWorker(options: SendWorkerOptions): Promise<{ stop(): Promise<void> }> {
  const { bus, db, lock, graphs, cipher, log } = options;
  const { topology } = bus;
  const maxAttempts = options.maxAttempts ?? 12;
  const echoWaitMs = options.echoWaitMs ?? 5_000;
  const graphTimeoutMs = options.graphTimeoutMs ?? 10_000;
  const giveUpAfterMs = options.giveUpAfterMs ?? 24 * 3_600_000;
  const keyPrefix = options.redisKeyPrefix ?? "";
  const metrics = createSendMetrics(options.registry);
  const schedule = createPageQuota({
    redis: options.redis,
    keyPrefix: `${keyPrefix}send-`,
    ratePerSecond: options.ratePerPagePerSecond ?? 20,
    burst: 1,
  });

  async function handle(msg: JsMsg) {
    const request = decodeMessage(msg, SendRequest, "send request");
    const outcome = await deliver(request);
    metrics.sends.inc({ outcome });
  }

  async function deliver(request: SendRequest): Promise<Settled> {
    const fields = { pageId: request.pageId, psid: request.psid, messageId: request.messageId };
    let message: Message | null | undefined = await db.message.findUnique({
      where: { id: request.messageId },
    });
    if (!message) {
      log.warn(fields, "send request without a message row, skipped");
      return "skipped";
    }
    if (settled(message)) return "skipped";

    if (message.sendAttemptStartedAt) {
      message = await resolveUnknownOutcome(message, request);
      if (!message) return "sent";
    }

    // Sends to one person leave in the order they were queued.
    const earlier = await earlierPendingSends(message);
    if (earlier > 0) {
      metrics.waits.inc({ reason: "earlier_send" });
      throw waitForEarlier(request, earlier);
    }

    if (Date.now() - message.createdAt.getTime() > giveUpAfterMs) {
      await recordFailed(
        message,
        request,
        `not sent within ${Math.round(giveUpAfterMs / 3_600_000)} h of queueing`,
      );
      return "failed";
    }
    const page = await db.pageConnection.findUnique({ where: { pageId: request.pageId } });
    if (page?.status !== "active") {
      const why = page?.statusReason ? ` (${page.statusReason})` : "";
      await recordFailed(
        message,
        request,
        `the page cannot send: it is ${page?.status ?? "not connected"}${why}`,
      );
      return "failed";
    }

    await waitForSlot(request);

    const attempt = await claimAttempt(message, request);
    if (!attempt) {
      // Another delivery of this message is calling Meta right now: it settles the row.
      throw new RetryLaterError("another delivery of this send is in flight", graphTimeoutMs);
    }
    const token = await readPageToken(db, cipher, request.pageId);
    const started = performance.now();
    let mid: string;
    try {
      ({ message_id: mid } = await graphs[attempt.platform].sendMessage(
        request.pageId,
        token,
        sendBody(attempt, request.psid),
      ));
    } catch (error) {
      if (error instanceof TransientGraphError && error.requestMayHaveApplied) {
        // Meta may have sent it: the attempt stays on the row and the next delivery resolves it.
        log.warn({ ...fields, err: error }, "Send API outcome unknown: waiting for the echo");
        metrics.unknownOutcomes.inc();
        throw new RetryLaterError("Send API outcome unknown, resolving by echo or thread", echoWaitMs);
      }
      return afterKnownFailure(attempt, request, error);
    } finally {
      metrics.sendSeconds.observe((performance.now() - started) / 1000);
    }
    // Meta answered: from here on a failure (a commit lost, a crash) leaves the attempt on the row, and the
    // next delivery finds the message in the thread instead of sending it again. Meta's answer is the
    // message's time: watermarks compare against it, never against the queueing time.
    await recordSent(attempt, request, mid, new Date());
    await clearSlot(request);
    return "sent";
  }

  /** Meta did not send it: the attempt is cleared, then retried (later) or failed with the reason. */
  async function afterKnownFailure(message: Message, request: SendRequest, error: unknown): Promise<Settled> {
    const failure = explainSendFailure(error);
    if (failure.outcome === "failed") {
      if (failure.reauthorize) {
        await setPageStatus({ db, bus }, request.pageId, "reauthorization_required", failure.reason);
      }
      await recordFailed(message, request, failure.reason);
      return "failed";
    }
    await clearAttempt(message);
    if (message.sendAttempts >= maxAttempts) {
      // Dead-lettered with the reason; onDeadLetter marks the row failed before the request is dropped.
      throw new PermanentError(`not sent after ${message.sendAttempts} attempts: ${failure.error.message}`);
    }
    log.warn(
      { messageId: message.id, pageId: request.pageId, err: failure.error },
      "send failed, will retry",
    );
    throw failure.error;
  }

  /**
   * The last call's outcome is unknown. While it may still be in flight (younger than the Graph timeout)
   * or its echo may still come, wait; then the thread says whether it went out. Returns the row to send
   * again, or undefined once it is recorded sent.
   */
  async function resolveUnknownOutcome(message: Message, request: SendRequest): Promise<Message | undefined> {
    const startedAt = message.sendAttemptStartedAt!;
    const age = Date.now() - startedAt.getTime();
    const settleAfter = graphTimeoutMs + echoWaitMs;
    if (age < settleAfter) {
      metrics.waits.inc({ reason: "unknown_outcome" });
      throw new RetryLaterError("waiting for the echo of a send whose outcome is unknown", settleAfter - age);
    }
    const token = await readPageToken(db, cipher, request.pageId);
    const thread = await graphs[message.platform].getThreadMessages(request.pageId, token, request.psid);
    // Thread messages already stored are not this send — except an Instagram echo stored on its own
    // (no app id says whose it is, and no send in flight matched it): that may be this very send, and
    // recording it merges the two rows.
    const known = new Set(
      (
        await db.message.findMany({
          where: {
            pageId: request.pageId,
            mid: { in: thread.map((m) => m.id) },
            NOT: { direction: "outgoing", sentBy: "unknown", platform: "instagram" },
          },
          select: { mid: true },
        })
      ).map((m) => m.mid),
    );
    // Meta's clock and ours may differ a little: look a minute before the attempt.
    const since = startedAt.getTime() - 60_000;
    const match = thread.find(
      (m) =>
        m.from?.id === request.pageId &&
        !known.has(m.id) &&
        Date.parse(m.created_time) >= since &&
        sameSentText(message.text, m.message),
    );
    const current = await db.message.findUnique({ where: { id: message.id } });
    if (!current || settled(current)) return undefined; // the echo confirmed it meanwhile
    if (match) {
      log.info({ messageId: message.id, mid: match.id }, "unknown send outcome resolved: it went out");
      metrics.resolved.inc({ outcome: "sent" });
      await recordSent(current, request, match.id, new Date(match.created_time));
      await clearSlot(request);
      return undefined;
    }
    log.info({ messageId: message.id }, "unknown send outcome resolved: not sent, sending again");
    metrics.resolved.inc({ outcome: "not_sent" });
    await clearAttempt(current);
    return { ...current, sendAttemptStartedAt: null };
  }

  /** Sends to the same person queued before this one and not settled yet. */
  function earlierPendingSends(message: Message) {
    return db.message.count({
      where: {
        conversationId: message.conversationId,
        direction: "outgoing",
        status: "sending",
        queueSeq: { lt: message.queueSeq },
      },
    });
  }

  /**
   * Comes back when its turn is near: the next in line looks again soon, the 500th of a broadcast much
   * later, so a long queue to one person costs a few redeliveries per message, not a poll every 300 ms each.
   */
  function waitForEarlier(request: SendRequest, earlier: number) {
    const perEarlierSendMs = 1000 / (options.ratePerPagePerSecond ?? 20);
    const delayMs = Math.min(30_000, 150 + earlier * perEarlierSendMs);
    return new RetryLaterError(
      `waiting for ${earlier} earlier send(s) to ${request.psid}`,
      delayMs + jitter(100),
    );
  }

  /**
   * A slot in the page's send schedule (GCRA in Redis, shared by replicas), reserved once per message and
   * kept until it is sent: a redelivered message keeps its place instead of queueing again at the back.
   */
  async function waitForSlot(request: SendRequest) {
    const key = `${keyPrefix}send-slot:${request.messageId}`;
    let notBefore = Number(await options.redis.get(key));
    if (!notBefore) {
      const delay = await schedule.reserve(request.pageId);
      notBefore = Date.now() + delay;
      const kept = await options.redis.set(key, String(notBefore), "PX", delay + 3_600_000, "NX");
      if (kept !== "OK") notBefore = Number(await options.redis.get(key)) || notBefore;
    }
    const wait = notBefore - Date.now();
    if (wait > 5) {
      metrics.throttled.inc();
      throw new RetryLaterError(`send schedule of page ${request.pageId}`, wait + jitter(20));
    }
  }

  async function clearSlot(request: SendRequest) {
    await options.redis.del(`${keyPrefix}send-slot:${request.messageId}`).catch(() => undefined);
  }

  /**
   * Records the attempt before Meta is called, under the conversation lock (so it never interleaves with
   * the echo of an earlier send) and only if no other attempt is on the row. The lock is released before
   * the call: a slow Graph API never holds up the person's incoming messages.
   */
  async function claimAttempt(message: Message, request: SendRequest): Promise<Message | undefined> {
    return lock.withConversationLock(request, async () => {
      const earlier = await earlierPendingSends(message);
      if (earlier > 0) throw waitForEarlier(request, earlier);
      const [claimed] = await db.$queryRaw<Array<{ id: string }>>`
        UPDATE messages SET send_attempt_started_at = now(), send_attempts = send_attempts + 1, updated_at = now()
        WHERE id = ${message.id}::uuid AND status = 'sending' AND mid IS NULL AND send_attempt_started_at IS NULL
        RETURNING id`;
      if (!claimed) return undefined;
      return db.message.findUnique({ where: { id: message.id } }).then((row) => row ?? undefined);
    });
  }

  async function clearAttempt(message: Pick<Message, "id">) {
    await db.$executeRaw`
      UPDATE messages SET send_attempt_started_at = NULL, updated_at = now()
      WHERE id = ${message.id}::uuid AND status = 'sending' AND mid IS NULL`;
  }

  async function recordSent(message: Message, request: SendRequest, mid: string, sentAt: Date) {
    const attempt = () => db.$transaction((tx) => markSent(tx, message, request, mid, sentAt));
    // The echo's row and ours can race for the mid: the loser sees the winner's commit on a second try.
    const rows = await attempt().catch((error: unknown) => {
      if (!isUniqueViolation(error)) throw error;
      return attempt();
    });
    log.info({ pageId: message.pageId, psid: request.psid, messageId: message.id, mid }, "message sent");
    if (rows.length > 0) await publishAfterCommit(rows);
  }

  /**
   * Only a row still `sending` without a mid moves: if the echo confirmed it first, it keeps its status
   * (possibly already delivered or read) and the echo published `message.sent`. An Instagram echo that no
   * send in flight matched (Meta echoed a text it had changed) was stored as its own row with this mid:
   * it is this send, so ours takes the mid, Meta's time and any later status, and that row goes.
   */
  async function markSent(
    tx: Prisma.TransactionClient,
    message: Message,
    request: SendRequest,
    mid: string,
    sentAt: Date,
  ): Promise<OutboxRow[]> {
    const [echoed] = await tx.$queryRaw<
      Array<{ id: string; conversation_id: string; status: Message["status"]; sent_at: Date }>
    >`
      DELETE FROM messages
      WHERE page_id = ${message.pageId} AND mid = ${mid} AND id <> ${message.id}::uuid
        AND direction = 'outgoing' AND sent_by = 'unknown' AND platform = 'instagram'
        AND EXISTS (SELECT 1 FROM messages ours WHERE ours.id = ${message.id}::uuid AND ours.mid IS NULL
                    AND ours.status = 'sending')
      RETURNING id::text, conversation_id::text, status, sent_at`;
    const status = echoed ? laterOutgoingStatus("sent", echoed.status) : "sent";
    const { count } = await tx.message.updateMany({
      where: { id: message.id, status: "sending", mid: null },
      data: { mid, status, error: null, sentAt: echoed?.sent_at ?? sentAt, sendAttemptStartedAt: null },
    });
    if (count === 0) return [];
    const now = Date.now();
    const events: DomainEvent[] = [
      {
        type: "message.sent",
        messageId: message.id,
        pageId: message.pageId,
        platform: message.platform,
        psid: request.psid,
        mid,
        occurredAt: now,
      },
      statusChanged(message, request, status, now),
    ];
    if (echoed) {
      events.push({
        type: "message.deleted",
        messageId: echoed.id,
        conversationId: echoed.conversation_id,
        pageId: message.pageId,
        platform: message.platform,
        psid: request.psid,
        mid,
        deletedAt: now,
        occurredAt: now,
      });
      log.info(
        { pageId: message.pageId, messageId: message.id, duplicate: echoed.id, mid },
        "an echo stored on its own was this send: merged into its row",
      );
    }
    const rows = events.map((e) => outboxRow(topology, e));
    await writeOutbox(tx, rows);
    return rows;
  }

  async function recordFailed(
    message: Pick<Message, "id" | "pageId" | "platform">,
    request: SendRequest,
    reason: string,
  ) {
    const now = Date.now();
    const events: DomainEvent[] = [
      {
        type: "message.failed",
        messageId: message.id,
        pageId: message.pageId,
        platform: message.platform,
        psid: request.psid,
        reason,
        occurredAt: now,
      },
      statusChanged(message, request, "failed", now),
    ];
    const rows = events.map((e) => outboxRow(topology, e));
    const moved = await db.$transaction(async (tx) => {
      const { count } = await tx.message.updateMany({
        where: { id: message.id, status: "sending", mid: null },
        data: { status: "failed", error: reason, sendAttemptStartedAt: null },
      });
      if (count > 0) await writeOutbox(tx, rows);
      return count > 0;
    });
    await clearSlot(request);
    log.warn({ pageId: message.pageId, psid: request.psid, messageId: message.id, reason }, "message failed");
    if (moved) await publishAfterCommit(rows);
  }

  async function publishAfterCommit(rows: OutboxRow[]) {
    // Committed already: if the broker is down the outbox relay publishes them later.
    await publishOutbox(bus.js, db, rows).catch((error: unknown) =>
      log.warn({ err: error }, "domain events left to the outbox relay"),
    );
  }

  const consumer = await runConsumer({
    js: bus.js,
    jsm: bus.jsm,
    topology,
    stream: topology.streams.sends.name,
    durable: topology.consumers.sendWorker,
    filterSubject: topology.subjects.sendRequests,
    stage: "send-worker",
    log,
    handle,
    concurrency: options.concurrency ?? 8,
    // Waiting (the schedule, an earlier send, an unknown outcome) is not failing: the attempt budget is
    // the row's count of Send API calls, checked above.
    maxRetryLaterAttempts: Number.POSITIVE_INFINITY,
    maxTransientAttempts: 50,
    ackWaitMs: Math.max(30_000, 2 * graphTimeoutMs),
    maxAckPending: 20_000,
    probeDependencies: options.probeDependencies,
    onOutcome: (outcome) => {
      if (outcome === "retried") metrics.sends.inc({ outcome: "retried" });
    },
    // Giving up on a send means telling the product: the row says `failed` before the request is dropped.
    onDeadLetter: async (msg, reason) => {
      const parsed = SendRequest.safeParse(safeJson(msg));
      if (!parsed.success) return;
      const request = parsed.data;
      await recordFailed(
        { id: request.messageId, pageId: request.pageId, platform: request.platform },
        request,
        reason,
      );
    },
  });

  return { stop: () => consumer.stop() };
}

function settled(message: Message) {
  return message.status !== "sending" || message.mid !== null;
}

function jitter(ms: number) {
  return Math.floor(Math.random() * ms);
}

function safeJson(msg: JsMsg): unknown {
  try {
    return msg.json();
  } catch {
    return undefined;
  }
}

function statusChanged(
  message: Pick<Message, "id" | "pageId" | "platform">,
  request: SendRequest,
  status: Message["status"],
  at: number,
): DomainEvent {
  return {
    type: "message.status_changed",
    messageId: message.id,
    pageId: message.pageId,
    platform: message.platform,
    psid: request.psid,
    status,
    previousStatus: "sending",
    occurredAt: at,
  };
}

/**
 * The Send API body, with our message id as `metadata`: Meta returns it in the echo, which confirms this row.
 * Instagram echoes carry no metadata (the mid, or the one in-flight send of the conversation, matches them)
 * and its Send API takes `messaging_type` only with the HUMAN_AGENT tag.
 */
export function sendBody(message: Message, psid: string): SendMessageBody {
  const { request } = message.payload as unknown as OutgoingPayload;
  const instagram = message.platform === "instagram";
  return {
    recipient: { id: psid },
    ...(instagram && !request.tag ? {} : { messaging_type: request.messaging_type }),
    ...(request.tag ? { tag: request.tag } : {}),
    message: {
      ...(message.text !== null ? { text: message.text } : {}),
      ...(request.attachment
        ? {
            attachment: {
              type: request.attachment.type,
              payload: instagram
                ? { url: request.attachment.url }
                : { url: request.attachment.url, is_reusable: true },
            },
          }
        : {}),
      ...(request.quick_replies ? { quick_replies: request.quick_replies } : {}),
      ...(instagram ? {} : { metadata: message.id }),
    },
  };
}

function createSendMetrics(registry: Registry | undefined) {
  const registers = registry ? [registry] : [];
  return {
    sends: new Counter({
      name: "switchboard_sends_total",
      help: "Send requests handled by outcome: sent, failed (for good), skipped (already settled), retried",
      labelNames: ["outcome"],
      registers,
    }),
    throttled: new Counter({
      name: "switchboard_send_throttled_total",
      help: "Sends postponed to their slot in the page's send schedule (no attempt spent)",
      registers,
    }),
    waits: new Counter({
      name: "switchboard_send_waits_total",
      help: "Sends postponed without an attempt: earlier_send (same person, queued first), unknown_outcome",
      labelNames: ["reason"],
      registers,
    }),
    unknownOutcomes: new Counter({
      name: "switchboard_send_unknown_outcomes_total",
      help: "Send API calls whose outcome was unknown (timeout, dropped connection)",
      registers,
    }),
    resolved: new Counter({
      name: "switchboard_send_unknown_resolved_total",
      help: "Unknown send outcomes resolved by reading the thread: sent (not sent again) or not_sent",
      labelNames: ["outcome"],
      registers,
    }),
    sendSeconds: new Histogram({
      name: "switchboard_send_api_seconds",
      help: "Duration of Send API calls",
      buckets: LATENCY_BUCKETS,
      registers,
    }),
  };
}
