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
      help: "Message rows stored (a redelivery stores none), per page and direction",
      labelNames: ["page_id", "direction"],
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
