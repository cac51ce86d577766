import {
  DiscardPolicy,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import type { BusTopology, StreamName } from "@switchboard/contracts";

export interface StreamOptions {
  /** 1 on a laptop, 3 on a production cluster. */
  replicas?: number;
  /** How long JetStream remembers a `Nats-Msg-Id` to drop a repeat (Meta's retries of one delivery). */
  duplicateWindowMs?: number;
  publishTimeoutMs?: number;
}

const ms = (value: number) => value * 1_000_000; // JetStream durations are nanoseconds
const DAY = 86_400_000;

/** The retention of each stream: what it is for decides how long it keeps and how it discards. */
function streamSettings(name: StreamName, options: StreamOptions): Partial<StreamConfig> {
  const base = {
    storage: StorageType.File,
    num_replicas: options.replicas ?? 1,
    duplicate_window: ms(options.duplicateWindowMs ?? 10 * 60_000),
    discard: DiscardPolicy.Old,
  };
  switch (name) {
    case "sends":
    case "reconcile":
      return { ...base, retention: RetentionPolicy.Workqueue, max_age: ms(7 * DAY) };
    case "unrouted":
    case "deadLetter":
      // Kept until someone replays or purges them; refusing new ones beats dropping old ones silently.
      return { ...base, retention: RetentionPolicy.Limits, max_age: 0, discard: DiscardPolicy.New };
    case "webhooks":
    case "events":
      return { ...base, retention: RetentionPolicy.Limits, max_age: ms(7 * DAY) };
    case "pages":
    case "domain":
      return { ...base, retention: RetentionPolicy.Limits, max_age: ms(30 * DAY) };
  }
}

/** Creates each stream, or updates it to the wanted settings: safe on every start of every replica. */
export async function ensureStreams(
  jsm: JetStreamManager,
  topology: BusTopology,
  options: StreamOptions = {},
) {
  for (const [key, stream] of Object.entries(topology.streams) as Array<
    [StreamName, { name: string; subjects: readonly string[] }]
  >) {
    const config = { ...streamSettings(key, options), name: stream.name, subjects: [...stream.subjects] };
    try {
      const info = await jsm.streams.info(stream.name);
      const { retention: _fixed, ...updatable } = config;
      if (info.config.retention === config.retention) await jsm.streams.update(stream.name, updatable);
    } catch (error) {
      if (!isNotFound(error)) throw error;
      await jsm.streams.add(config);
    }
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
