import type { PubAck } from "@nats-io/jetstream";
import { type ObjectStore, Objm } from "@nats-io/obj";
import { type Bus, publishRaw } from "@switchboard/bus";
import { Headers } from "@switchboard/contracts";
import type { Logger } from "@switchboard/observability";
import type { IngressMetrics } from "./metrics";

/** Room left in a message for its headers (trace id, receive time, `Nats-Msg-Id`, reason). */
const HEADER_ROOM = 2048;
/** Kept as long as a reference to it can be replayed from the webhooks stream (7 days) and then some. */
const LARGE_ENTRY_TTL_MS = 30 * 86_400_000;

export interface EntryMessage {
  subject: string;
  data: Buffer;
  msgId: string;
  headers: Record<string, string | number | undefined>;
  /** For the log line and the metric. */
  pageId: string;
}

/**
 * Publishes an entry as one message when it fits the broker's max payload (read from the server's
 * INFO, so a reconnect to a server with another limit is followed). One that does not fit is stored in
 * the large-entries Object Store bucket and the message carries only its name (`Sb-Entry-Ref`), which
 * the page-router resolves before decoding: a correctly signed body under WEBHOOK_BODY_LIMIT is always
 * stored, whatever the broker's max_payload.
 */
export function createEntryPublisher(deps: {
  bus: Bus;
  log: Logger;
  metrics: IngressMetrics;
  publishTimeoutMs: number;
  replicas: number;
}) {
  const { bus, log, metrics } = deps;
  let bucket: Promise<ObjectStore> | undefined;
  // Created on the first large entry (idempotent: opens the bucket when another replica made it).
  const largeEntries = () => {
    bucket ??= new Objm(bus.js)
      .create(bus.topology.buckets.largeEntries, {
        replicas: deps.replicas,
        ttl: LARGE_ENTRY_TTL_MS * 1_000_000,
        description: "webhook entries larger than the broker's max payload",
      })
      .catch((error: unknown) => {
        bucket = undefined;
        throw error;
      });
    return bucket;
  };

  const fits = (data: Buffer) => data.length + HEADER_ROOM <= (bus.nc.info?.max_payload ?? 1024 * 1024);

  return async function publishEntry(entry: EntryMessage): Promise<PubAck> {
    const options = { msgId: entry.msgId, timeoutMs: deps.publishTimeoutMs };
    if (fits(entry.data)) {
      return publishRaw(bus.js, entry.subject, entry.data, { ...options, headers: entry.headers });
    }
    // Named by content (the message id): Meta's retry writes the same object again, the stream drops
    // the repeated message.
    const ref = entry.msgId;
    const store = await largeEntries();
    await store.putBlob({ name: ref }, entry.data, { timeout: deps.publishTimeoutMs });
    const ack = await publishRaw(bus.js, entry.subject, new Uint8Array(0), {
      ...options,
      headers: { ...entry.headers, [Headers.entryRef]: ref },
    });
    metrics.largeEntries.inc();
    log.info(
      {
        pageId: entry.pageId,
        bytes: entry.data.length,
        maxPayload: bus.nc.info?.max_payload,
        ref,
        bucket: bus.topology.buckets.largeEntries,
      },
      "entry larger than the broker's max payload stored in the object store",
    );
    return ack;
  };
}
export type PublishEntry = ReturnType<typeof createEntryPublisher>;
