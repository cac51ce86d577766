import { createRequire } from "node:module";
import { setTimeout as sleep } from "node:timers/promises";
import { RetryLaterError } from "@switchboard/bus";
import { conversationLockKey, type Platform } from "@switchboard/contracts";
import { Counter, Histogram, LATENCY_BUCKETS, type Registry } from "@switchboard/observability";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
// Types by path: redlock 5.0.0-beta.2's `exports` has no `types` entry, and a tsconfig `paths` alias would
// also redirect tsx's runtime `require` to the .d.ts.
import type * as RedlockModule from "../node_modules/redlock/dist/index";

// redlock 5.0.0-beta.2 resolves to its ESM build under Node and to its CommonJS build under tsx, where
// the named exports vanish; loading the CommonJS build everywhere gives the same classes in every runner.
const {
  default: Redlock,
  ExecutionError,
  ResourceLockedError,
} = createRequire(import.meta.url)("redlock") as typeof RedlockModule;

/**
 * The lock every writer of a conversation holds: incoming messages, echoes, deliveries, reads, reactions
 * and our own sends (issue 7's send worker) serialise on Chatwoot's key
 * `FB_MESSAGE_CREATE_LOCK::<psid>::<page_id>`, so their effects on one conversation never interleave.
 *
 * Usage (one instance per process, shared by every consumer):
 *
 *   const lock = createConversationLock({ redis, keyPrefix, log, registry });
 *   await lock.withConversationLock({ psid, pageId, platform }, async (signal) => {
 *     // … read and write; before committing: if (signal.aborted) throw signal.error
 *   });
 *
 * - Held elsewhere after `waitRetries` short waits → `RetryLaterError` (from @switchboard/bus): the
 *   consumer naks with `retryLaterDelayMs` and dead-letters after its `maxRetryLaterAttempts`. No worker
 *   blocks for long on a busy conversation.
 * - Redis unreachable (no quorum) → `ConversationLockUnavailableError`, a transient error: redelivered
 *   with backoff.
 * - The lock is extended automatically (Redlock `using`) while `fn` runs; if an extension fails the
 *   signal aborts and `signal.error` says why.
 * - A failed release after `fn` succeeded is logged, not thrown: the lock expires after its TTL.
 */
/** A conversation to lock: (page, PSID), or (Instagram account, IGSID) with `platform: "instagram"`. */
export interface LockedConversation {
  psid: string;
  pageId: string;
  platform?: Platform;
}

export interface ConversationLock {
  withConversationLock<T>(
    conversation: LockedConversation,
    fn: (signal: RedlockModule.RedlockAbortSignal) => Promise<T>,
  ): Promise<T>;
  /**
   * Several conversations at once, in ONE Redlock call (all keys or none, one round trip per node): a
   * batch of events holds every conversation it writes. Held elsewhere → `RetryLaterError` for the whole
   * call; the caller splits the batch then.
   */
  withConversationLocks<T>(
    conversations: ReadonlyArray<LockedConversation>,
    fn: (signal: RedlockModule.RedlockAbortSignal) => Promise<T>,
  ): Promise<T>;
  /** The Redis key of a conversation's lock (prefix included). */
  keyFor(conversation: LockedConversation): string;
}

export interface ConversationLockOptions {
  /** One client per independent Redis node: the lock needs a majority of them. */
  redis: Redis[];
  /** `REDIS_KEY_PREFIX`, prepended to every lock key. */
  keyPrefix?: string;
  /** Lock TTL; extended while the handler runs, so it bounds how long a crashed holder blocks others. */
  ttlMs?: number;
  /** Short in-process waits for a held lock before giving up with `RetryLaterError`. */
  waitRetries?: number;
  waitDelayMs?: number;
  /** The delay `RetryLaterError` asks for (Chatwoot retries about 1 s apart). */
  retryLaterDelayMs?: number;
  log: Logger;
  registry?: Registry;
}

export class ConversationLockUnavailableError extends Error {
  constructor(key: string, options?: ErrorOptions) {
    super(`conversation lock ${key}: no Redis quorum`, options);
    this.name = "ConversationLockUnavailableError";
  }
}

type Acquisition = "held_elsewhere" | "redis_unavailable";

export function createConversationLock(options: ConversationLockOptions): ConversationLock {
  const { log, keyPrefix = "" } = options;
  const ttlMs = options.ttlMs ?? 10_000;
  const waitRetries = options.waitRetries ?? 2;
  const waitDelayMs = options.waitDelayMs ?? 100;
  const retryLaterDelayMs = options.retryLaterDelayMs ?? 1000;
  const metrics = createLockMetrics(options.registry);
  // One attempt per `using` call: waiting is done below, where each attempt can be counted.
  const redlock = new Redlock(options.redis, {
    retryCount: 0,
    automaticExtensionThreshold: Math.min(1000, Math.floor(ttlMs / 3)),
  });
  // Redlock also emits every failed vote here; they are classified per acquisition below.
  redlock.on("error", () => undefined);

  const keyFor = ({ psid, pageId, platform }: LockedConversation) =>
    `${keyPrefix}${conversationLockKey(psid, pageId, platform)}`;

  // Handlers of this process queue per conversation here instead of racing each other in Redis: a burst
  // of events for one conversation would otherwise burn its redelivery attempts on its own siblings.
  const localTails = new Map<string, Promise<void>>();

  function withConversationLock<T>(
    conversation: LockedConversation,
    fn: (signal: RedlockModule.RedlockAbortSignal) => Promise<T>,
  ): Promise<T> {
    return withConversationLocks([conversation], fn);
  }

  async function withConversationLocks<T>(
    conversations: ReadonlyArray<LockedConversation>,
    fn: (signal: RedlockModule.RedlockAbortSignal) => Promise<T>,
  ): Promise<T> {
    const keys = [...new Set(conversations.map(keyFor))].sort();
    const started = performance.now();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    // Registered for every key at once, synchronously: each holder waits only for holders registered
    // before it, so waits never form a cycle.
    const previous: Array<Promise<void>> = [];
    const tails = keys.map((key) => {
      const before = localTails.get(key);
      if (before) previous.push(before);
      const tail = (before ?? Promise.resolve()).then(() => mine);
      localTails.set(key, tail);
      return [key, tail] as const;
    });
    try {
      await Promise.all(previous);
      return await acquireAndRun(keys, started, previous.length > 0, fn);
    } finally {
      release();
      for (const [key, tail] of tails) if (localTails.get(key) === tail) localTails.delete(key);
    }
  }

  async function acquireAndRun<T>(
    keys: string[],
    started: number,
    queuedLocally: boolean,
    fn: (signal: RedlockModule.RedlockAbortSignal) => Promise<T>,
  ): Promise<T> {
    const described = keys.length === 1 ? keys[0]! : `${keys[0]} and ${keys.length - 1} more`;
    for (let attempt = 0; ; attempt++) {
      let entered = false;
      let acquiredAt = 0;
      let outcome: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
      try {
        await redlock.using(keys, ttlMs, async (signal) => {
          entered = true;
          acquiredAt = performance.now();
          metrics.acquired.inc({ waited: attempt > 0 || queuedLocally ? "true" : "false" });
          metrics.waitSeconds.observe((acquiredAt - started) / 1000);
          signal.addEventListener("abort", () => {
            metrics.extensionsLost.inc();
            log.warn({ key: described, err: signal.error }, "conversation lock extension failed");
          });
          try {
            outcome = { ok: true, value: await fn(signal) };
          } catch (error) {
            outcome = { ok: false, error };
          }
        });
      } catch (error) {
        if (!entered) {
          const reason = await classify(error);
          if (reason === "held_elsewhere") {
            metrics.contended.inc();
            if (attempt < waitRetries) {
              await sleep(waitDelayMs + Math.floor(Math.random() * waitDelayMs));
              continue;
            }
            metrics.failed.inc({ reason });
            throw new RetryLaterError(`conversation lock held elsewhere: ${described}`, retryLaterDelayMs);
          }
          metrics.failed.inc({ reason });
          throw new ConversationLockUnavailableError(described, { cause: error });
        }
        // `fn` ran; only the release failed. The lock expires by its TTL.
        log.warn({ key: described, err: error }, "conversation lock release failed");
      } finally {
        if (entered) metrics.holdSeconds.observe((performance.now() - acquiredAt) / 1000);
      }
      if (!outcome) throw new Error("INVARIANT: lock routine finished without an outcome");
      if (outcome.ok) return outcome.value;
      throw outcome.error;
    }
  }

  return { withConversationLock, withConversationLocks, keyFor };
}

/** Held by someone else (any node said so), or Redis itself failed (no node answered). */
async function classify(error: unknown): Promise<Acquisition> {
  if (error instanceof ResourceLockedError) return "held_elsewhere";
  if (!(error instanceof ExecutionError)) return "redis_unavailable";
  const stats = await Promise.all(error.attempts);
  const votes = stats.flatMap((s) => [...s.votesAgainst.values()]);
  return votes.some((e) => e instanceof ResourceLockedError) ? "held_elsewhere" : "redis_unavailable";
}

function createLockMetrics(registry: Registry | undefined) {
  const registers = registry ? [registry] : [];
  return {
    acquired: new Counter({
      name: "switchboard_lock_acquired_total",
      help: "Conversation locks acquired; waited=true when it queued behind this process's holder or found the lock held",
      labelNames: ["waited"],
      registers,
    }),
    contended: new Counter({
      name: "switchboard_lock_contended_total",
      help: "Conversation lock attempts that found the lock held by another holder",
      registers,
    }),
    failed: new Counter({
      name: "switchboard_lock_failed_total",
      help: "Conversation locks not acquired: held_elsewhere (message redelivered later) or redis_unavailable",
      labelNames: ["reason"],
      registers,
    }),
    extensionsLost: new Counter({
      name: "switchboard_lock_extensions_lost_total",
      help: "Conversation locks whose automatic extension failed while the handler ran (the handler aborts)",
      registers,
    }),
    waitSeconds: new Histogram({
      name: "switchboard_lock_wait_seconds",
      help: "Time from asking for a conversation lock to holding it",
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    holdSeconds: new Histogram({
      name: "switchboard_lock_hold_seconds",
      help: "Time a conversation lock was held",
      buckets: LATENCY_BUCKETS,
      registers,
    }),
  };
}
