import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from "@nats-io/jetstream";
import { type BusTopology, Headers } from "@switchboard/contracts";
import type { Logger } from "pino";
import { PermanentError, RetryLaterError } from "./errors";
import { headersToObject, publishRaw } from "./publish";
import { isNotFound } from "./streams";

export type Outcome = "acked" | "retried" | "dead_lettered";

export interface ConsumerOptions {
  js: JetStreamClient;
  jsm: JetStreamManager;
  topology: BusTopology;
  /** Stream to consume from, durable consumer name, and subject filter. */
  stream: string;
  durable: string;
  filterSubject: string;
  /** Stage name for dead letters (`<ns>.dlq.<stage>`) and logs. */
  stage: string;
  log: Logger;
  handle: (msg: JsMsg) => Promise<void>;
  /** Messages handled at once by this process. */
  concurrency?: number;
  /** Attempts for `RetryLaterError` before the message is dead-lettered. */
  maxRetryLaterAttempts?: number;
  /** Attempts for unexpected (transient) errors before dead-lettering: long enough to ride out an outage. */
  maxTransientAttempts?: number;
  ackWaitMs?: number;
  /**
   * Messages delivered and not yet acknowledged, across replicas (default 2000). Messages naked with a
   * delay count too: a stage that delays a flooding page's backlog needs room for it.
   */
  maxAckPending?: number;
  /** Called once per handled message, for metrics. */
  onOutcome?: (outcome: Outcome, msg: JsMsg, error?: unknown) => void;
  /**
   * Checks the stage's dependencies (database, Redis quorum…): resolves when they answer, throws when one
   * does not. Asked after a transient failure: if a dependency is down, the consumer pauses (stops pulling,
   * keeps the failed messages, probes until it answers, then handles them again) instead of spending their
   * attempts: an outage pauses work, it does not dead-letter it.
   */
  probeDependencies?: () => Promise<void>;
  /** While paused, how often to probe (default 1 s). */
  probeIntervalMs?: number;
  /** Called when the consumer pauses (with the probe's error) and when it resumes. */
  onPauseChange?: (paused: boolean, error?: unknown) => void;
  /**
   * A handler running longer than this is treated as failed (transient): a hung connection must not hold
   * a slot for ever (default 60 s; it keeps the message alive with `working()` until then).
   */
  handlerTimeoutMs?: number;
  /**
   * Runs, awaited, after a message's dead letter is stored and before the message is terminated: the
   * stage records what giving up means (the send worker marks the row `failed`). If it throws, the
   * message is kept and redelivered; it is dead-lettered again (the copy is deduplicated) next time.
   */
  onDeadLetter?: (msg: JsMsg, reason: string, error: unknown) => Promise<void>;
}

export interface RunningConsumer {
  /** Stops pulling, waits for handlers in flight to finish. */
  stop(): Promise<void>;
  inFlight(): number;
}

/** Exponential backoff for transient failures: 0.5 s, 1 s, 2 s … capped at 60 s, jittered ±20 %. */
export function transientBackoffMs(attempt: number): number {
  const base = Math.min(60_000, 500 * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/** Creates the durable pull consumer if missing (several replicas share it), or updates its max_ack_pending. */
export async function ensureConsumer(
  jsm: JetStreamManager,
  stream: string,
  durable: string,
  filterSubject: string,
  ackWaitMs = 30_000,
  maxAckPending = 2000,
) {
  try {
    const info = await jsm.consumers.info(stream, durable);
    if (info.config.max_ack_pending !== maxAckPending) {
      await jsm.consumers.update(stream, durable, { max_ack_pending: maxAckPending });
    }
  } catch (error) {
    if (!isNotFound(error)) throw error;
    await jsm.consumers
      .add(stream, {
        durable_name: durable,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        filter_subject: filterSubject,
        ack_wait: ackWaitMs * 1_000_000,
        max_deliver: -1,
        max_ack_pending: maxAckPending,
      })
      .catch(async (addError: unknown) => {
        // Another replica created it first.
        await jsm.consumers.info(stream, durable).catch(() => {
          throw addError;
        });
      });
  }
}

/** Copies a message to the dead-letter stream with why it failed, where it came from and how often it was tried. */
export async function deadLetter(
  js: JetStreamClient,
  topology: BusTopology,
  msg: JsMsg,
  stage: string,
  reason: string,
) {
  await publishRaw(js, topology.subjects.deadLetter(stage), msg.data, {
    msgId: `dlq:${msg.info.stream}:${msg.seq}`,
    headers: {
      ...headersToObject(msg.headers),
      "Nats-Msg-Id": undefined,
      [Headers.reason]: reason.slice(0, 1000),
      [Headers.stage]: stage,
      [Headers.originalSubject]: msg.subject,
      [Headers.failedAt]: new Date().toISOString(),
      [Headers.deliveries]: msg.info.deliveryCount,
    },
  });
}

export class HandlerTimeoutError extends Error {
  constructor(stage: string, timeoutMs: number) {
    super(`${stage} handler did not finish within ${timeoutMs} ms`);
    this.name = "HandlerTimeoutError";
  }
}

/**
 * Pulls from a durable consumer and runs `handle` for each message, up to `concurrency` at once.
 * Success acks; `RetryLaterError` naks with its delay (delayed redelivery, no worker blocked);
 * `PermanentError` and exhausted attempts go to the dead-letter stream with the reason; anything else
 * is transient and redelivered with backoff — unless `probeDependencies` says a dependency is down, in
 * which case the consumer pauses until it is back (see ConsumerOptions).
 */
export async function runConsumer(options: ConsumerOptions): Promise<RunningConsumer> {
  const { js, jsm, stream, durable, filterSubject, log, stage } = options;
  const concurrency = options.concurrency ?? 16;
  const maxRetryLater = options.maxRetryLaterAttempts ?? 8;
  const maxTransient = options.maxTransientAttempts ?? 40;
  const ackWaitMs = options.ackWaitMs ?? 30_000;
  const handlerTimeoutMs = options.handlerTimeoutMs ?? 60_000;
  const probeIntervalMs = options.probeIntervalMs ?? 1000;
  await ensureConsumer(jsm, stream, durable, filterSubject, ackWaitMs, options.maxAckPending);
  const consumer = await js.consumers.get(stream, durable);

  const inFlight = new Set<Promise<void>>();
  let slotFreed: (() => void) | undefined;
  let stopping = false;
  let messages: Awaited<ReturnType<typeof consumer.consume>> | undefined;
  /** Set while a dependency is down: resolves when the probe answers again. */
  let outage: Promise<void> | undefined;

  const heartbeat = (msg: JsMsg) => setInterval(() => msg.working(), Math.max(1000, ackWaitMs / 2));
  // The acks of every handler finishing in this event-loop turn leave together: nats.js writes its buffer
  // in a microtask after the first command, so acks issued from separate continuations each cost a socket
  // write. An ack lost to a crash in between only redelivers a message whose effects are already stored.
  let acksDue: JsMsg[] = [];
  const sendDueAcks = () => {
    const due = acksDue;
    acksDue = [];
    for (const m of due) m.ack();
  };
  const ackTogether = (msg: JsMsg) => {
    if (acksDue.length === 0) setImmediate(sendDueAcks);
    acksDue.push(msg);
  };

  const runHandler = async (msg: JsMsg) => {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        options.handle(msg),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new HandlerTimeoutError(stage, handlerTimeoutMs)),
            handlerTimeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  };

  /**
   * Probes once; on failure enters (or joins) the outage. Returns the outage's end wrapped in an object
   * (an async function would otherwise wait for the promise itself), or undefined when all is healthy.
   */
  const dependencyOutage = async (): Promise<{ until: Promise<void> } | undefined> => {
    if (!options.probeDependencies) return undefined;
    if (outage) return { until: outage };
    try {
      await options.probeDependencies();
      return undefined;
    } catch (probeError) {
      outage ??= pauseUntilHealthy(probeError);
      return { until: outage };
    }
  };

  const pauseUntilHealthy = async (firstError: unknown) => {
    log.warn({ stage, err: firstError }, "dependency unavailable: pausing the consumer");
    options.onPauseChange?.(true, firstError);
    // Stop pulling: what this process had buffered goes back to the server after ack_wait.
    const current = messages;
    messages = undefined;
    // Not awaited: closing waits for the pull loop, which may be waiting for a slot a held message occupies.
    void current?.close().catch(() => undefined);
    let delay = probeIntervalMs;
    while (!stopping) {
      await new Promise((r) => setTimeout(r, delay));
      try {
        await options.probeDependencies!();
        break;
      } catch {
        delay = Math.min(delay * 2, probeIntervalMs * 10);
      }
    }
    log.warn({ stage }, "dependencies answer again: resuming the consumer");
    outage = undefined;
    options.onPauseChange?.(false);
    // Not awaited: the held messages go on as soon as this resolves, and pulling again waits for the old
    // pull loop, which may itself be waiting for one of their slots.
    if (!stopping) void resumePulling();
  };

  const resumePulling = async () => {
    for (let attempt = 1; !stopping; attempt++) {
      try {
        await startPulling();
        return;
      } catch (error) {
        log.warn({ stage, err: error, attempt }, "could not pull again yet, retrying");
        await new Promise((r) => setTimeout(r, Math.min(10_000, 500 * attempt)));
      }
    }
  };

  const settle = async (msg: JsMsg) => {
    const beat = heartbeat(msg);
    try {
      for (;;) {
        try {
          await runHandler(msg);
          ackTogether(msg);
          options.onOutcome?.("acked", msg);
          return;
        } catch (error) {
          if (error instanceof PermanentError || error instanceof RetryLaterError) {
            await failed(msg, error);
            return;
          }
          const paused = await dependencyOutage();
          if (!paused || stopping) {
            await failed(msg, error);
            return;
          }
          // Keep the message (the heartbeat holds it) and try it again once the dependency is back,
          // without spending a delivery attempt on the outage.
          await paused.until;
          if (stopping) {
            msg.nak();
            return;
          }
        }
      }
    } finally {
      clearInterval(beat);
    }
  };

  const failed = async (msg: JsMsg, error: unknown) => {
    const attempt = msg.info.deliveryCount;
    const fields = { stage, subject: msg.subject, seq: msg.seq, attempt };
    if (error instanceof PermanentError) {
      await deadLetterOrRetry(msg, error.reason, error);
    } else if (error instanceof RetryLaterError) {
      if (attempt >= maxRetryLater) {
        await deadLetterOrRetry(msg, `${error.reason} (gave up after ${attempt} attempts)`, error);
      } else {
        log.debug({ ...fields, reason: error.reason, delayMs: error.delayMs }, "retrying later");
        msg.nak(error.delayMs);
        options.onOutcome?.("retried", msg, error);
      }
    } else if (attempt >= maxTransient) {
      await deadLetterOrRetry(
        msg,
        `failed ${attempt} times: ${(error as Error)?.message ?? String(error)}`,
        error,
      );
    } else {
      const delayMs = transientBackoffMs(attempt);
      log.warn({ ...fields, err: error, delayMs }, "handler failed, redelivering");
      msg.nak(delayMs);
      options.onOutcome?.("retried", msg, error);
    }
  };

  const deadLetterOrRetry = async (msg: JsMsg, reason: string, error: unknown) => {
    try {
      await deadLetter(js, options.topology, msg, stage, reason);
      await options.onDeadLetter?.(msg, reason, error);
      // No reason on the TERM: NATS 2.9 only knows a bare `+TERM`, takes `+TERM <reason>` for nothing and
      // redelivers the message after ack_wait. The reason travels in the dead letter's headers.
      msg.term();
      log.error({ stage, subject: msg.subject, seq: msg.seq, reason }, "dead-lettered");
      options.onOutcome?.("dead_lettered", msg, error);
    } catch (publishError) {
      // The dead-letter stream (or the stage's own record of giving up) failed: keep the message.
      log.error({ stage, err: publishError }, "dead-lettering failed, redelivering");
      msg.nak(transientBackoffMs(msg.info.deliveryCount));
    }
  };

  let loop: Promise<void> = Promise.resolve();
  const drain = async (iterator: NonNullable<typeof messages>) => {
    for await (const msg of iterator) {
      while (inFlight.size >= concurrency) {
        await new Promise<void>((resolve) => {
          slotFreed = resolve;
        });
      }
      if (messages !== iterator) {
        // Paused while this one waited for a slot: it goes back to the server.
        msg.nak();
        continue;
      }
      const task = settle(msg).finally(() => {
        inFlight.delete(task);
        slotFreed?.();
        slotFreed = undefined;
      });
      inFlight.add(task);
    }
  };
  const startPulling = async () => {
    await loop.catch(() => undefined);
    const iterator = await consumer.consume({ max_messages: concurrency * 2 });
    messages = iterator;
    loop = drain(iterator);
  };
  await startPulling();

  return {
    inFlight: () => inFlight.size,
    async stop() {
      stopping = true;
      const current = messages;
      messages = undefined;
      await current?.close().catch(() => undefined);
      await loop.catch(() => undefined);
      await Promise.allSettled([...inFlight]);
      // Before the connection drains: the last handlers' acks go now, not in a turn that may come too late.
      sendDueAcks();
    },
  };
}
