import { createLogger } from "@switchboard/observability";
import { testServices, uniqueId } from "@switchboard/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Bus,
  connectBus,
  deleteStreams,
  ensureConsumer,
  publishJson,
  RetryLaterError,
  runConsumer,
} from "./index";

const log = createLogger({ service: "bus-test", level: "silent" });

describe("max_ack_pending", () => {
  let bus: Bus;

  beforeAll(async () => {
    bus = await connectBus({
      streams: "provision",
      servers: [testServices().natsUrl],
      name: "bus-ack-pending",
      namespace: uniqueId(),
      log,
    });
  });

  afterAll(async () => {
    await deleteStreams(bus.jsm, bus.topology);
    await bus.drain();
  });

  it("is set on a new durable consumer and updated on an existing one", async () => {
    const { streams, subjects } = bus.topology;
    await ensureConsumer(bus.jsm, streams.webhooks.name, "ack-pending", subjects.webhookEntries);
    expect((await bus.jsm.consumers.info(streams.webhooks.name, "ack-pending")).config.max_ack_pending).toBe(
      2000,
    );
    await ensureConsumer(
      bus.jsm,
      streams.webhooks.name,
      "ack-pending",
      subjects.webhookEntries,
      30_000,
      20_000,
    );
    expect((await bus.jsm.consumers.info(streams.webhooks.name, "ack-pending")).config.max_ack_pending).toBe(
      20_000,
    );
  });

  // Why it matters: messages naked with a delay hold their slot, so a delayed backlog larger than
  // max_ack_pending stops the consumer from reaching the messages behind it.
  it("lets messages behind a delayed backlog through when the backlog fits", async () => {
    const { streams, subjects } = bus.topology;
    for (let i = 0; i < 30; i++) await publishJson(bus.js, subjects.webhookEntry("flood"), { i });
    await publishJson(bus.js, subjects.webhookEntry("quiet"), { i: 0 });
    let floodRedeliveries = 0;
    let redeliveriesBeforeQuiet: number | undefined;
    const consumer = await runConsumer({
      js: bus.js,
      jsm: bus.jsm,
      topology: bus.topology,
      stream: streams.webhooks.name,
      durable: "behind-backlog",
      filterSubject: subjects.webhookEntries,
      stage: "test",
      log,
      concurrency: 4,
      maxAckPending: 100,
      handle: async (msg) => {
        if (msg.subject.endsWith("quiet")) redeliveriesBeforeQuiet = floodRedeliveries;
        else if (msg.info.deliveryCount === 1) throw new RetryLaterError("over rate", 2_000);
        else floodRedeliveries++;
      },
    });
    const deadline = Date.now() + 15_000;
    while (redeliveriesBeforeQuiet === undefined && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    await consumer.stop();
    // Reached while the whole flood still waited for its delay.
    expect(redeliveriesBeforeQuiet).toBe(0);
  });
});
