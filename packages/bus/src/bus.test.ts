import { Headers } from "@switchboard/contracts";
import { createLogger } from "@switchboard/observability";
import { eventually, testServices, uniqueId } from "@switchboard/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Bus,
  connectBus,
  deleteStreams,
  listStored,
  PermanentError,
  publishJson,
  RetryLaterError,
  replayStored,
  runConsumer,
} from "./index";

const log = createLogger({ service: "bus-test", level: "silent" });

describe("bus", () => {
  let bus: Bus;

  beforeAll(async () => {
    bus = await connectBus({
      streams: "provision",
      servers: [testServices().natsUrl],
      name: "bus-test",
      namespace: uniqueId(),
      log,
    });
  });

  afterAll(async () => {
    await deleteStreams(bus.jsm, bus.topology);
    await bus.drain();
  });

  it("deduplicates by Nats-Msg-Id", async () => {
    const subject = bus.topology.subjects.webhookEntry("p1");
    const first = await publishJson(bus.js, subject, { a: 1 }, { msgId: "same" });
    const second = await publishJson(bus.js, subject, { a: 1 }, { msgId: "same" });
    expect(first.duplicate).toBe(false);
    expect(second.duplicate).toBe(true);
  });

  it("acks, retries later, dead-letters permanent failures and exhausted retries, and replays them", async () => {
    const { subjects, streams } = bus.topology;
    const seen = new Map<string, number>();
    const consumer = await runConsumer({
      js: bus.js,
      jsm: bus.jsm,
      topology: bus.topology,
      stream: streams.events.name,
      durable: "bus-test",
      filterSubject: subjects.messagingEvents,
      stage: "bus-test",
      log,
      maxRetryLaterAttempts: 3,
      handle: async (msg) => {
        const { id, mode } = msg.json<{ id: string; mode: string }>();
        seen.set(id, (seen.get(id) ?? 0) + 1);
        if (mode === "poison") throw new PermanentError("cannot parse this");
        if (mode === "busy") throw new RetryLaterError("lock held elsewhere", 50);
        if (mode === "flaky" && seen.get(id)! < 2) throw new Error("database unreachable");
      },
    });
    for (const [id, mode] of [
      ["ok", "ok"],
      ["poison", "poison"],
      ["busy", "busy"],
      ["flaky", "flaky"],
    ]) {
      await publishJson(bus.js, subjects.messagingEvent("p1"), { id, mode });
    }
    const dead = await eventually(
      async () => {
        const stored = await listStored(bus.js, bus.jsm, streams.deadLetter.name);
        return stored.length === 2 && stored;
      },
      { message: "two dead letters" },
    );
    await eventually(() => seen.get("flaky") === 2 && seen.get("ok") === 1);
    expect(seen.get("busy")).toBe(3);
    expect(seen.get("poison")).toBe(1);
    const reasons = dead.map((d) => d.reason).sort();
    expect(reasons[0]).toBe("cannot parse this");
    expect(reasons[1]).toMatch(/lock held elsewhere \(gave up after 3 attempts\)/);
    expect(dead[0]!.headers[Headers.originalSubject]).toBe(subjects.messagingEvent("p1"));
    // Dead-lettered is terminated: nothing stays pending to be redelivered after ack_wait.
    await eventually(
      async () => (await bus.jsm.consumers.info(streams.events.name, "bus-test")).num_ack_pending === 0,
      { message: "nothing left pending" },
    );

    await consumer.stop();
    const result = await replayStored(bus.js, bus.jsm, streams.deadLetter.name, dead);
    expect(result).toEqual({ replayed: 2, failed: 0 });
    expect(await listStored(bus.js, bus.jsm, streams.deadLetter.name)).toEqual([]);
    const events = await listStored(bus.js, bus.jsm, streams.events.name, subjects.messagingEvent("p1"));
    expect(events.map((e) => JSON.parse(new TextDecoder().decode(e.data)).id)).toEqual([
      "ok",
      "poison",
      "busy",
      "flaky",
      ...dead.map((d) => JSON.parse(new TextDecoder().decode(d.data)).id),
    ]);
  });
});
