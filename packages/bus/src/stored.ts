import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from "@nats-io/jetstream";
import { Headers } from "@switchboard/contracts";
import { header, headersToObject, publishRaw } from "./publish";

export interface StoredMessage {
  seq: number;
  subject: string;
  time: Date;
  headers: Record<string, string>;
  data: Uint8Array;
  reason: string | undefined;
}

/**
 * Reads what a kept-for-replay stream (unrouted, dead letters) holds, optionally filtered by subject,
 * without consuming it, from the first message to the last one present now.
 */
export async function listStored(
  js: JetStreamClient,
  jsm: JetStreamManager,
  stream: string,
  filterSubject?: string,
  limit = 10_000,
): Promise<StoredMessage[]> {
  const info = await jsm.streams.info(stream);
  const lastSeq = info.state.last_seq;
  if (info.state.messages === 0) return [];
  // An ephemeral pull consumer with `filter_subject` (singular: NATS 2.9 has no `filter_subjects`).
  const created = await jsm.consumers.add(stream, {
    ack_policy: AckPolicy.None,
    deliver_policy: DeliverPolicy.All,
    inactive_threshold: 30_000_000_000,
    ...(filterSubject ? { filter_subject: filterSubject } : {}),
  });
  const consumer = await js.consumers.get(stream, created.name);
  const out: StoredMessage[] = [];
  while (out.length < limit) {
    const batch = await consumer.fetch({ max_messages: 256, expires: 1000 });
    let received = 0;
    let done = false;
    for await (const msg of batch) {
      received++;
      out.push(toStored(msg));
      if (msg.seq >= lastSeq || msg.info.pending === 0 || out.length >= limit) {
        done = true;
        break;
      }
    }
    if (done || received === 0) break;
  }
  await jsm.consumers.delete(stream, created.name).catch(() => undefined);
  return out;
}

function toStored(msg: JsMsg): StoredMessage {
  return {
    seq: msg.seq,
    subject: msg.subject,
    time: new Date(Math.floor(msg.info.timestampNanos / 1_000_000)),
    headers: headersToObject(msg.headers),
    data: msg.data,
    reason: header(msg.headers, Headers.reason),
  };
}

/**
 * Publishes stored messages again to the subject `target` names (their original one by default), then
 * removes them from the store. A message whose publish fails stays where it was.
 */
export async function replayStored(
  js: JetStreamClient,
  jsm: JetStreamManager,
  stream: string,
  messages: StoredMessage[],
  target: (message: StoredMessage) => string = (m) => m.headers[Headers.originalSubject] ?? m.subject,
): Promise<{ replayed: number; failed: number }> {
  let replayed = 0;
  let failed = 0;
  for (const message of messages) {
    try {
      await publishRaw(js, target(message), message.data, {
        msgId: `replay:${stream}:${message.seq}`,
        headers: { ...message.headers, "Nats-Msg-Id": undefined, [Headers.reason]: undefined },
      });
      await jsm.streams.deleteMessage(stream, message.seq, false);
      replayed++;
    } catch {
      failed++;
    }
  }
  return { replayed, failed };
}
