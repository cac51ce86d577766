import {
  DiscardPolicy,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
  type StreamInfo,
} from "@nats-io/jetstream";
import { type BusTopology, type StreamName, streamPolicies } from "@switchboard/contracts";

export interface StreamOptions {
  /** 1 on a laptop, 3 on a production cluster. */
  replicas?: number;
  /** How long JetStream remembers a `Nats-Msg-Id` to drop a repeat (Meta's retries of one delivery). */
  duplicateWindowMs?: number;
  /** Byte limits of the kept-for-replay streams (default 1 GiB each). */
  unroutedMaxBytes?: number;
  deadLetterMaxBytes?: number;
}

const ns = (ms: number) => ms * 1_000_000; // JetStream durations are nanoseconds
const GiB = 1024 ** 3;

/** The configuration `pnpm bus:migrate` wants for one stream: its policy in contracts plus the deployment's sizes. */
export function desiredStreamConfig(
  key: StreamName,
  stream: { name: string; subjects: readonly string[] },
  options: StreamOptions,
): Partial<StreamConfig> & { name: string } {
  const policy = streamPolicies[key];
  const maxBytes =
    policy.maxBytesSetting === "unrouted"
      ? (options.unroutedMaxBytes ?? GiB)
      : policy.maxBytesSetting === "deadLetter"
        ? (options.deadLetterMaxBytes ?? GiB)
        : -1;
  return {
    name: stream.name,
    subjects: [...stream.subjects],
    storage: StorageType.File,
    num_replicas: options.replicas ?? 1,
    duplicate_window: ns(options.duplicateWindowMs ?? 10 * 60_000),
    retention: policy.retention === "workqueue" ? RetentionPolicy.Workqueue : RetentionPolicy.Limits,
    discard: policy.discard === "new" ? DiscardPolicy.New : DiscardPolicy.Old,
    max_age: ns(policy.maxAgeMs),
    max_bytes: maxBytes,
  };
}

export interface StreamChange {
  stream: string;
  action: "created" | "updated" | "unchanged";
  /** What changed, `field: old → new`. */
  changes: string[];
  /** Settings left as they are on purpose (replicas are never lowered). */
  kept: string[];
}

export interface ProvisionOptions extends StreamOptions {
  /** Lower a stream's replicas when asked to (an operator's explicit choice; never by default). */
  allowFewerReplicas?: boolean;
  /** Retries while a fresh cluster elects its meta leader or places R3 streams (default 60 s). */
  waitMs?: number;
  onRetry?: (stream: string, error: unknown) => void;
}

const COMPARED = ["subjects", "num_replicas", "duplicate_window", "discard", "max_age", "max_bytes"] as const;

/**
 * The streams' one owner: creates each missing stream and brings an existing one to the wanted settings.
 * Replicas are only ever raised (a laptop's R1 setting must not shrink a production R3 stream) unless
 * `allowFewerReplicas`. Run by `pnpm bus:migrate` (Kubernetes migration job, `pnpm dev`), never by services.
 */
export async function provisionStreams(
  jsm: JetStreamManager,
  topology: BusTopology,
  options: ProvisionOptions = {},
): Promise<StreamChange[]> {
  const results: StreamChange[] = [];
  for (const [key, stream] of Object.entries(topology.streams) as Array<
    [StreamName, { name: string; subjects: readonly string[] }]
  >) {
    const wanted = desiredStreamConfig(key, stream, options);
    results.push(
      await whileClusterNotReady(() => provisionOne(jsm, wanted, options), {
        waitMs: options.waitMs ?? 60_000,
        onRetry: (error) => options.onRetry?.(stream.name, error),
      }),
    );
  }
  return results;
}

async function provisionOne(
  jsm: JetStreamManager,
  wanted: Partial<StreamConfig> & { name: string },
  options: ProvisionOptions,
): Promise<StreamChange> {
  let info: StreamInfo;
  try {
    info = await jsm.streams.info(wanted.name);
  } catch (error) {
    if (!isNotFound(error)) throw error;
    try {
      await jsm.streams.add(wanted);
    } catch (addError) {
      // Another provisioner created it a moment ago: fall through to compare.
      if (!/already in use|exists/i.test((addError as Error)?.message ?? "")) throw addError;
      info = await jsm.streams.info(wanted.name);
      return compareAndUpdate(jsm, info, wanted, options);
    }
    return { stream: wanted.name, action: "created", changes: [], kept: [] };
  }
  return compareAndUpdate(jsm, info, wanted, options);
}

async function compareAndUpdate(
  jsm: JetStreamManager,
  info: StreamInfo,
  wanted: Partial<StreamConfig> & { name: string },
  options: ProvisionOptions,
): Promise<StreamChange> {
  const current = info.config as unknown as Record<string, unknown>;
  const target = { ...wanted } as Record<string, unknown>;
  const kept: string[] = [];
  if (info.config.retention !== wanted.retention) {
    // JetStream cannot change a stream's retention; saying so beats failing every deploy.
    kept.push(`retention stays ${info.config.retention} (wanted ${wanted.retention}; recreate the stream)`);
  }
  delete target.retention;
  if (
    !options.allowFewerReplicas &&
    typeof current.num_replicas === "number" &&
    current.num_replicas > (wanted.num_replicas ?? 1)
  ) {
    kept.push(`num_replicas stays ${current.num_replicas} (wanted ${wanted.num_replicas}; never lowered)`);
    target.num_replicas = current.num_replicas;
  }
  const changes = COMPARED.filter((field) => !sameValue(current[field], target[field])).map(
    (field) => `${field}: ${show(current[field])} → ${show(target[field])}`,
  );
  if (changes.length === 0) return { stream: wanted.name, action: "unchanged", changes, kept };
  await jsm.streams.update(wanted.name, { ...info.config, ...target } as Partial<StreamConfig>);
  return { stream: wanted.name, action: "updated", changes, kept };
}

function sameValue(a: unknown, b: unknown) {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}
function show(value: unknown) {
  return Array.isArray(value) ? value.join(",") : String(value);
}

/**
 * Runs `run` again, backing off (0.5 s … 5 s), while the cluster is not ready to answer it (see
 * `isClusterNotReady`), for at most `waitMs`; any other error, or one past the deadline, is thrown.
 */
export async function whileClusterNotReady<T>(
  run: () => Promise<T>,
  options: { waitMs: number; onRetry?: (error: unknown) => void },
): Promise<T> {
  const deadline = Date.now() + options.waitMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (error) {
      if (!isClusterNotReady(error) || Date.now() > deadline) throw error;
      options.onRetry?.(error);
      await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 250 * 2 ** attempt)));
    }
  }
}

/**
 * A fresh or busy cluster answers "timeout" or "no suitable peers" / "insufficient resources" until its meta
 * leader is elected and every node has joined, or while it creates R3 streams for a migration: an answer to
 * wait out, not a reason to fail a deploy or exit a service.
 */
export function isClusterNotReady(error: unknown): boolean {
  const message = (error as Error)?.message ?? String(error);
  return (
    /timeout|no suitable peers|insufficient resources|leader|jetstream not (enabled|available)|503/i.test(
      message,
    ) || (error as { name?: string })?.name === "TimeoutError"
  );
}

export class StreamsMissingError extends Error {
  constructor(readonly missing: string[]) {
    super(
      `JetStream streams missing: ${missing.join(", ")}. Streams are created by \`pnpm bus:migrate\` ` +
        "(the Kubernetes migration job runs it; so does `pnpm dev`) with the same NATS_URL and BUS_NAMESPACE.",
    );
    this.name = "StreamsMissingError";
  }
}

/**
 * What a service does at start: checks that every stream exists (waiting a while for a migration job that
 * is still running) and changes nothing. Throws `StreamsMissingError` naming the missing ones.
 */
export async function verifyStreams(
  jsm: JetStreamManager,
  topology: BusTopology,
  options: { waitMs?: number; onWait?: (missing: string[]) => void; pauseMs?: number } = {},
) {
  const deadline = Date.now() + (options.waitMs ?? 0);
  let pending: string[] = Object.values(topology.streams).map((stream) => stream.name);
  for (;;) {
    const missing: string[] = [];
    for (const name of pending) {
      try {
        await jsm.streams.info(name);
      } catch (error) {
        // Unanswered is "not seen yet": keep waiting; anything else waiting cannot fix is thrown.
        if (!isNotFound(error) && !isClusterNotReady(error)) throw error;
        missing.push(name);
      }
    }
    if (missing.length === 0) return;
    if (Date.now() >= deadline) throw new StreamsMissingError(missing);
    options.onWait?.(missing);
    pending = missing;
    await new Promise((resolve) => setTimeout(resolve, options.pauseMs ?? 1000));
  }
}

export function isNotFound(error: unknown): boolean {
  const e = error as { code?: string | number; api_error?: { err_code?: number }; message?: string };
  return (
    e?.api_error?.err_code === 10059 ||
    e?.api_error?.err_code === 10014 ||
    /not found/i.test(e?.message ?? "")
  );
}

/** Deletes every stream of a namespace (tests clean up after themselves). */
export async function deleteStreams(jsm: JetStreamManager, topology: BusTopology) {
  for (const stream of Object.values(topology.streams)) {
    await jsm.streams.delete(stream.name).catch(() => undefined);
  }
}
