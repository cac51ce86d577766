import { Counter, Histogram, LATENCY_BUCKETS, type Registry } from "@switchboard/observability";

export function createMessageMetrics(registry: Registry) {
  return {
    events: new Counter({
      name: "switchboard_messaging_events_total",
      help: "Messaging events handled, by kind and outcome (acked, retried, dead_lettered)",
      labelNames: ["kind", "outcome"],
      registers: [registry],
    }),
    messagesStored: new Counter({
      name: "switchboard_messages_stored_total",
      // No page label: 100,000 pages would be 200,000 series. Per page counts come from the database.
      help: "Message rows stored (a redelivery stores none), per direction",
      labelNames: ["direction"],
      registers: [registry],
    }),
    batchSize: new Histogram({
      name: "switchboard_message_batch_size",
      help: "Messaging events stored together in one lock call and one transaction",
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500],
      registers: [registry],
    }),
    batchesSplit: new Counter({
      name: "switchboard_message_batches_split_total",
      help: "Batches stored event by event instead: a conversation held elsewhere (lock_held) or an event that failed (error)",
      labelNames: ["reason"],
      registers: [registry],
    }),
    processingSeconds: new Histogram({
      name: "switchboard_message_processing_latency_seconds",
      help: "Time from Meta's timestamp of a message to its row being committed",
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    domainEventsPublished: new Counter({
      name: "switchboard_domain_events_published_total",
      help: "Domain events published after commit, by type",
      labelNames: ["type"],
      registers: [registry],
    }),
  };
}
export type MessageMetrics = ReturnType<typeof createMessageMetrics>;
