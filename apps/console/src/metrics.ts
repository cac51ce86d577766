import type { Bus } from "@switchboard/bus";
import { Counter, Gauge, OTHER_PAGES, type Registry } from "@switchboard/observability";
import type { Logger } from "pino";
import { type JetStreamState, readJetStreamState } from "./jetstream";

/**
 * JetStream's state as gauges, read from the server when Prometheus scrapes (one read per scrape, shared
 * by the gauges). The console exports them so that the lag, DLQ, unrouted and stream-size alerts have one source,
 * whichever service replicas run.
 */
export function registerJetStreamMetrics({
  registry,
  bus,
  log,
}: {
  registry: Registry;
  bus: Bus;
  log: Logger;
}) {
  const registers = [registry];
  let reading: { at: number; state: Promise<JetStreamState | undefined> } | undefined;
  const scrapeErrors = new Counter({
    name: "switchboard_jetstream_scrape_errors_total",
    help: "Times JetStream's state could not be read for a scrape",
    registers,
  });
  const current = () => {
    if (!reading || Date.now() - reading.at > 1000) {
      reading = {
        at: Date.now(),
        state: readJetStreamState(bus).catch((error: unknown) => {
          scrapeErrors.inc();
          log.warn({ err: (error as Error).message }, "could not read JetStream state");
          return undefined;
        }),
      };
    }
    return reading.state;
  };
  const gauge = (
    name: string,
    help: string,
    labelNames: string[],
    fill: (g: Gauge<string>, s: JetStreamState) => void,
  ) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers,
      async collect() {
        const state = await current();
        this.reset();
        if (state) fill(this, state);
      },
    });

  gauge("switchboard_jetstream_stream_messages", "Messages stored in each stream", ["stream"], (g, s) => {
    for (const { stream, messages } of s.streams) g.set({ stream }, messages);
  });
  // Labelled by the stream's key in the topology (`unrouted`, `deadLetter`…): a few fixed values, the same
  // in every namespace, so one alert rule covers every deployment.
  gauge("switchboard_stream_bytes", "Bytes stored in each stream", ["stream"], (g, s) => {
    for (const { key, bytes } of s.streams) g.set({ stream: key }, bytes);
  });
  gauge(
    "switchboard_stream_max_bytes",
    "Byte limit of each stream that has one (a full unrouted or dead-letter stream refuses new messages)",
    ["stream"],
    (g, s) => {
      for (const { key, maxBytes } of s.streams) if (maxBytes !== undefined) g.set({ stream: key }, maxBytes);
    },
  );
  gauge(
    "switchboard_jetstream_consumer_pending",
    "Messages a durable consumer has not been delivered yet (its lag)",
    ["stream", "consumer"],
    (g, s) => {
      for (const c of s.consumers) g.set({ stream: c.stream, consumer: c.consumer }, c.pending);
    },
  );
  gauge(
    "switchboard_jetstream_consumer_ack_pending",
    "Messages delivered to a durable consumer and not acknowledged yet (in flight or waiting for a retry)",
    ["stream", "consumer"],
    (g, s) => {
      for (const c of s.consumers) g.set({ stream: c.stream, consumer: c.consumer }, c.ackPending);
    },
  );
  gauge(
    "switchboard_jetstream_consumer_redelivered",
    "Messages a durable consumer has had redelivered at least once and not yet acknowledged",
    ["stream", "consumer"],
    (g, s) => {
      for (const c of s.consumers) g.set({ stream: c.stream, consumer: c.consumer }, c.redelivered);
    },
  );
  gauge(
    "switchboard_jetstream_unrouted_waiting",
    "Webhook entries waiting on the unrouted stream, per page: the 100 pages with the most, the rest summed as _other",
    ["page_id"],
    (g, s) => setLargestPages(g, s.unroutedByPage),
  );
  gauge(
    "switchboard_jetstream_overflow_waiting",
    "Entries waiting in pages' overflows for their fair share, per page: the 100 pages with the most, the rest as _other",
    ["page_id"],
    (g, s) => setLargestPages(g, s.overflowByPage),
  );
  gauge(
    "switchboard_jetstream_dead_letters_waiting",
    "Messages waiting on the dead-letter stream, per stage that gave up on them",
    ["stage"],
    (g, s) => {
      for (const [stage, count] of s.deadLettersByStage) g.set({ stage }, count);
    },
  );
}

/**
 * Per-page counts as a gauge bounded however many pages have some (the console lists them all): the 100
 * largest keep their `page_id`, the rest are summed as `_other`.
 */
export function setLargestPages(gauge: Gauge, counts: ReadonlyMap<string, number>, keep = 100) {
  const ranked = [...counts].sort((a, b) => b[1] - a[1]);
  for (const [pageId, count] of ranked.slice(0, keep)) gauge.set({ page_id: pageId }, count);
  const rest = ranked.slice(keep).reduce((sum, [, count]) => sum + count, 0);
  if (rest > 0) gauge.set({ page_id: OTHER_PAGES }, rest);
}
