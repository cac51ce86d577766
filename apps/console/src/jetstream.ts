import type { Bus } from "@switchboard/bus";
import { listStored } from "@switchboard/bus";
import { Headers, type StreamName } from "@switchboard/contracts";

export interface ConsumerState {
  stream: string;
  consumer: string;
  /** Messages not yet delivered to the consumer. */
  pending: number;
  /** Delivered, not yet acknowledged. */
  ackPending: number;
  redelivered: number;
}

/** One stream: `key` is its name in the topology (`unrouted`, `deadLetter`…), the same in every namespace. */
export interface StreamState {
  key: StreamName;
  stream: string;
  messages: number;
  bytes: number;
  /** Its byte limit; undefined when it has none (bounded by age only). */
  maxBytes: number | undefined;
}

/** What JetStream holds right now: the numbers behind the lag, DLQ, unrouted and stream-size alerts. */
export interface JetStreamState {
  streams: StreamState[];
  consumers: ConsumerState[];
  /** Unrouted entries waiting, per page id (from the per-subject counts of the unrouted stream). */
  unroutedByPage: Map<string, number>;
  /** Entries waiting in a page's overflow for its fair share, per page id. */
  overflowByPage: Map<string, number>;
  /** Dead letters waiting, per stage (`<ns>.dlq.<stage>`). */
  deadLettersByStage: Map<string, number>;
}

async function subjectCounts(bus: Bus, stream: string, filter: string): Promise<Map<string, number>> {
  const info = await bus.jsm.streams.info(stream, { subjects_filter: filter });
  return new Map(Object.entries(info.state.subjects ?? {}));
}

function withoutPrefix(counts: Map<string, number>, prefix: string): Map<string, number> {
  return new Map([...counts].map(([subject, count]) => [subject.slice(prefix.length), count]));
}

export async function readJetStreamState(bus: Bus): Promise<JetStreamState> {
  const { streams, subjects } = bus.topology;
  const keys = Object.keys(streams) as StreamName[];
  const streamNames = keys.map((key) => streams[key].name);
  const infos = await Promise.all(streamNames.map((name) => bus.jsm.streams.info(name)));
  const consumers: ConsumerState[] = [];
  for (const stream of streamNames) {
    for await (const info of bus.jsm.consumers.list(stream)) {
      // Durable consumers only: ephemeral ones are the CLI's and the console's own reads.
      if (!info.config.durable_name) continue;
      consumers.push({
        stream,
        consumer: info.name,
        pending: info.num_pending,
        ackPending: info.num_ack_pending,
        redelivered: info.num_redelivered,
      });
    }
  }
  const [unrouted, deadLetters, overflow] = await Promise.all([
    subjectCounts(bus, streams.unrouted.name, subjects.unroutedAll),
    subjectCounts(bus, streams.deadLetter.name, subjects.deadLetters),
    subjectCounts(bus, streams.overflow.name, subjects.pageOverflows),
  ]);
  return {
    streams: infos.map((info, index) => ({
      key: keys[index]!,
      stream: info.config.name,
      messages: info.state.messages,
      bytes: info.state.bytes,
      maxBytes: info.config.max_bytes > 0 ? info.config.max_bytes : undefined,
    })),
    consumers,
    unroutedByPage: withoutPrefix(unrouted, subjects.unrouted("")),
    overflowByPage: withoutPrefix(overflow, subjects.pageOverflow("")),
    deadLettersByStage: withoutPrefix(deadLetters, subjects.deadLetter("")),
  };
}

/**
 * Dead letters per page. The DLQ's subjects are per stage, so the page comes from the message: its page
 * header, or the page token of the subject it failed on (webhook entries and messaging events are per page).
 */
export async function deadLettersByPage(bus: Bus): Promise<Map<string, number>> {
  const { streams, subjects } = bus.topology;
  const perPage = [subjects.webhookEntry(""), subjects.messagingEvent("")];
  const stored = await listStored(bus.js, bus.jsm, streams.deadLetter.name, subjects.deadLetters);
  const counts = new Map<string, number>();
  for (const message of stored) {
    const original = message.headers[Headers.originalSubject] ?? "";
    const prefix = perPage.find((p) => original.startsWith(p));
    const pageId = message.headers[Headers.pageId] ?? (prefix ? original.slice(prefix.length) : undefined);
    if (pageId) counts.set(pageId, (counts.get(pageId) ?? 0) + 1);
  }
  return counts;
}

/** When the page's newest entry still in the webhooks stream arrived (7 days are kept). */
export async function lastWebhookAt(bus: Bus, pageId: string): Promise<Date | null> {
  const { streams, subjects } = bus.topology;
  const message = await bus.jsm.streams
    .getMessage(streams.webhooks.name, { last_by_subj: subjects.webhookEntry(pageId) })
    .catch(() => null);
  return message ? message.time : null;
}
