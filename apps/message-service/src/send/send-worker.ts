import { type Bus, type JsMsg, PermanentError, RetryLaterError, runConsumer } from "@switchboard/bus";
import { type DomainEvent, SendRequest } from "@switchboard/contracts";
import type { TokenCipher } from "@switchboard/crypto";
import type { Db, Message } from "@switchboard/db";
import type { GraphClient, SendMessageBody } from "@switchboard/graph-api";
import { Counter, Histogram, LATENCY_BUCKETS, type Registry } from "@switchboard/observability";
import { readPageToken, setPageStatus } from "@switchboard/pages";
import type { OutgoingPayload } from "@switchboard/send-queue";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import type { ConversationLock } from "../conversation-lock";
import { outboxRow, publishOutbox, writeOutbox } from "../domain-events";
import { explainSendFailure } from "./send-failure";

export interface SendWorkerOptions {
  bus: Bus;
  db: Db;
  lock: ConversationLock;
  graph: GraphClient;
  cipher: TokenCipher;
  /** For the per-page send rate limit, shared by every replica. */
  redis: Redis;
  redisKeyPrefix?: string;
  log: Logger;
  registry?: Registry;
  /** Send API calls per page per second, across replicas. */
  ratePerPagePerSecond?: number;
  concurrency?: number;
  /** Deliveries of one send (transient failures, rate limits, a busy lock) before it fails for good. */
  maxAttempts?: number;
  /** After a send whose outcome is unknown, how long to wait for its echo before trying again. */
  echoWaitMs?: number;
}

/**
 * Sends queued messages through the Send API, each under its conversation's lock, so the send and the
 * echo Meta returns for it never interleave. The `messages` row is the truth: a redelivered request whose
 * row is no longer `sending` (sent, confirmed by its echo, or failed) does nothing.
 */
export async function startSendWorker(options: SendWorkerOptions): Promise<{ stop(): Promise<void> }> {
  const { bus, db, lock, graph, cipher, log } = options;
  const { topology } = bus;
  const maxAttempts = options.maxAttempts ?? 12;
  const echoWaitMs = options.echoWaitMs ?? 5_000;
  const metrics = createSendMetrics(options.registry);
  const limiter = new RateLimiterRedis({
    storeClient: options.redis,
    keyPrefix: `${options.redisKeyPrefix ?? ""}send-rate`,
    points: options.ratePerPagePerSecond ?? 20,
    duration: 1,
  });
  const pendingFailures = new Set<Promise<void>>();

  async function handle(msg: JsMsg) {
    const parsed = SendRequest.safeParse(msg.json());
    if (!parsed.success) throw new PermanentError(`invalid send request: ${parsed.error.message}`);
    const request = parsed.data;
    const fields = { pageId: request.pageId, psid: request.psid, messageId: request.messageId };

    await lock.withConversationLock(request.psid, request.pageId, async () => {
      const message = await db.message.findUnique({ where: { id: request.messageId } });
      if (!message) {
        // The API removed the row because queueing failed; nothing to send.
        log.warn(fields, "send request without a message row, skipped");
        return;
      }
      if (message.status !== "sending" || message.mid !== null) {
        log.debug({ ...fields, status: message.status }, "already settled, skipped");
        return;
      }
      const page = await db.pageConnection.findUnique({ where: { pageId: request.pageId } });
      if (page?.status !== "active") {
        await recordFailed(
          message,
          request,
          `the page cannot send: it is ${page?.status ?? "not connected"}`,
        );
        return;
      }
      await takeRateToken(request.pageId);
      const token = await readPageToken(db, cipher, request.pageId);
      const started = performance.now();
      let mid: string;
      try {
        ({ message_id: mid } = await graph.sendMessage(
          request.pageId,
          token,
          sendBody(message, request.psid),
        ));
      } catch (error) {
        const failure = explainSendFailure(error, { echoWaitMs });
        if (failure.outcome === "retry") {
          log.warn({ ...fields, err: failure.error }, "send failed, will retry");
          throw failure.error;
        }
        if (failure.reauthorize) {
          await setPageStatus({ db, bus }, request.pageId, "reauthorization_required", failure.reason);
        }
        await recordFailed(message, request, failure.reason);
        return;
      } finally {
        metrics.sendSeconds.observe((performance.now() - started) / 1000);
      }
      await recordSent(message, request, mid);
    });
  }

  async function takeRateToken(pageId: string) {
    try {
      await limiter.consume(pageId);
    } catch (rejection) {
      if (!(rejection instanceof RateLimiterRes)) throw rejection;
      metrics.throttled.inc();
      throw new RetryLaterError(
        `send rate limit of page ${pageId}`,
        rejection.msBeforeNext + Math.floor(Math.random() * 100),
      );
    }
  }

  async function recordSent(message: Message, request: SendRequest, mid: string) {
    const now = Date.now();
    const events: DomainEvent[] = [
      {
        type: "message.sent",
        messageId: message.id,
        pageId: message.pageId,
        psid: request.psid,
        mid,
        occurredAt: now,
      },
      statusChanged(message, request, "sent", now),
    ];
    const rows = events.map((e) => outboxRow(topology, e));
    // Only a row still `sending` without a mid moves: if the echo confirmed it first, it keeps its status
    // (possibly already delivered or read).
    const moved = await db.$transaction(async (tx) => {
      const { count } = await tx.message.updateMany({
        where: { id: message.id, status: "sending", mid: null },
        data: { mid, status: "sent", error: null },
      });
      if (count > 0) await writeOutbox(tx, rows);
      return count > 0;
    });
    metrics.sends.inc({ outcome: "sent" });
    log.info({ pageId: message.pageId, psid: request.psid, messageId: message.id, mid }, "message sent");
    if (moved) await publishAfterCommit(rows);
  }

  async function recordFailed(message: Pick<Message, "id" | "pageId">, request: SendRequest, reason: string) {
    const now = Date.now();
    const events: DomainEvent[] = [
      {
        type: "message.failed",
        messageId: message.id,
        pageId: message.pageId,
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
        data: { status: "failed", error: reason },
      });
      if (count > 0) await writeOutbox(tx, rows);
      return count > 0;
    });
    metrics.sends.inc({ outcome: "failed" });
    log.warn({ pageId: message.pageId, psid: request.psid, messageId: message.id, reason }, "message failed");
    if (moved) await publishAfterCommit(rows);
  }

  async function publishAfterCommit(rows: ReturnType<typeof outboxRow>[]) {
    // Committed already: if the broker is down the outbox relay publishes them later.
    await publishOutbox(bus.js, db, rows).catch((error: unknown) =>
      log.warn({ err: error }, "domain events left to the outbox relay"),
    );
  }

  /** Out of attempts (dead-lettered): the person will not get the message, so say so on the row. */
  function failExhausted(msg: JsMsg, error: unknown) {
    const parsed = SendRequest.safeParse(msg.json());
    if (!parsed.success) return;
    const request = parsed.data;
    const reason = `not sent after ${msg.info.deliveryCount} attempts: ${(error as Error)?.message ?? String(error)}`;
    const task = recordFailed({ id: request.messageId, pageId: request.pageId }, request, reason)
      .catch((recordError: unknown) =>
        log.error(
          { err: recordError, messageId: request.messageId },
          "could not mark an exhausted send failed",
        ),
      )
      .finally(() => pendingFailures.delete(task));
    pendingFailures.add(task);
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
    maxRetryLaterAttempts: maxAttempts,
    maxTransientAttempts: maxAttempts,
    onOutcome: (outcome, msg, error) => {
      if (outcome === "retried") metrics.sends.inc({ outcome: "retried" });
      if (outcome === "dead_lettered") failExhausted(msg, error);
    },
  });

  return {
    async stop() {
      await consumer.stop();
      await Promise.allSettled([...pendingFailures]);
    },
  };
}

function statusChanged(
  message: Pick<Message, "id" | "pageId">,
  request: SendRequest,
  status: "sent" | "failed",
  at: number,
): DomainEvent {
  return {
    type: "message.status_changed",
    messageId: message.id,
    pageId: message.pageId,
    psid: request.psid,
    status,
    previousStatus: "sending",
    occurredAt: at,
  };
}

/** The Send API body, with our message id as `metadata`: Meta returns it in the echo, which confirms this row. */
export function sendBody(message: Message, psid: string): SendMessageBody {
  const { request } = message.payload as unknown as OutgoingPayload;
  return {
    recipient: { id: psid },
    messaging_type: request.messaging_type,
    ...(request.tag ? { tag: request.tag } : {}),
    message: {
      ...(message.text !== null ? { text: message.text } : {}),
      ...(request.attachment
        ? {
            attachment: {
              type: request.attachment.type,
              payload: { url: request.attachment.url, is_reusable: true },
            },
          }
        : {}),
      ...(request.quick_replies ? { quick_replies: request.quick_replies } : {}),
      metadata: message.id,
    },
  };
}

function createSendMetrics(registry: Registry | undefined) {
  const registers = registry ? [registry] : [];
  return {
    sends: new Counter({
      name: "switchboard_sends_total",
      help: "Send requests handled by outcome: sent, failed (for good), retried",
      labelNames: ["outcome"],
      registers,
    }),
    throttled: new Counter({
      name: "switchboard_send_throttled_total",
      help: "Sends postponed by the per-page send rate limit",
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
