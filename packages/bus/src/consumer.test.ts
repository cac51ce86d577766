import { createLogger } from "@switchboard/observability";
import { eventually, testServices, uniqueId } from "@switchboard/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  type Bus,
  connectBus,
  decodeMessage,
  deleteStreams,
  listStored,
  publishJson,
  runConsumer,
} from "./index";

const log = createLogger({ service: "consumer-test", level: "silent" });

describe("runConsumer under failure", () => {
  let bus: Bus;
  beforeAll(async () => {
    bus = await connectBus({
      streams: "provision",
      servers: [testServices().natsUrl],
      name: "consumer-test",
      namespace: uniqueId(),
      log,
    });
  });
  afterAll(async () => {
    await deleteStreams(bus.jsm, bus.topology);
    await bus.drain();
  });

  const base = (durable: string) => ({
    js: bus.js,
    jsm: bus.jsm,
    topology: bus.topology,
    stream: bus.topology.streams.events.name,
    durable,
    filterSubject: bus.topology.subjects.messagingEvent(durable),
    stage: durable,
    log,
  });

  it("a dependency outage pauses the consumer instead of spending attempts, then everything is handled", async () => {
    let databaseUp = false;
    const handled = new Set<number>();
    let handlerCalls = 0;
    const pauses: boolean[] = [];
    const failedDuringOutage = new Set<number>();
    const deliveries = new Map<number, number>();
    const consumer = await runConsumer({
      ...base("outage"),
      // Fewer slots than messages: the pull loop is left waiting for a slot that a held message occupies.
      concurrency: 4,
      maxTransientAttempts: 2, // an outage of any length must not reach it
      ackWaitMs: 2000, // what was buffered when it paused comes back after ack_wait
      probeIntervalMs: 50,
      probeDependencies: async () => {
        if (!databaseUp) throw new Error("database unreachable");
      },
      onPauseChange: (paused) => pauses.push(paused),
      handle: async (msg) => {
        handlerCalls++;
        const { n } = msg.json<{ n: number }>();
        if (!databaseUp) {
          failedDuringOutage.add(n);
          // Fails a moment later, as a connection timeout does: by then the pull loop holds more messages.
          await new Promise((r) => setTimeout(r, 100));
          throw new Error("connect ECONNREFUSED");
        }
        handled.add(n);
        deliveries.set(n, msg.info.deliveryCount);
      },
    });
    for (let n = 0; n < 20; n++)
      await publishJson(bus.js, bus.topology.subjects.messagingEvent("outage"), { n });
    await eventually(() => pauses.includes(true), { message: "paused" });
    const callsWhenPaused = handlerCalls;
    await new Promise((r) => setTimeout(r, 1500)); // 30 probe intervals: nothing pulled, nothing retried
    expect(handlerCalls).toBe(callsWhenPaused);
    databaseUp = true;
    await eventually(() => handled.size === 20, {
      message: "all 20 handled after the outage",
      timeoutMs: 40_000,
    });
    await consumer.stop();
    expect(pauses).toEqual([true, false]);
    // The messages that failed on the outage were kept and handled again in place: no redelivery spent.
    expect(failedDuringOutage.size).toBeGreaterThan(0);
    for (const n of failedDuringOutage) expect(deliveries.get(n)).toBe(1);
    expect(await listStored(bus.js, bus.jsm, bus.topology.streams.deadLetter.name)).toHaveLength(0);
  }, 60_000);

  it("a message that fails on its own is still dead-lettered while the dependencies are healthy", async () => {
    const consumer = await runConsumer({
      ...base("own-failure"),
      maxTransientAttempts: 2,
      probeDependencies: async () => undefined,
      handle: async () => {
        throw new Error("this event breaks the handler");
      },
    });
    await publishJson(bus.js, bus.topology.subjects.messagingEvent("own-failure"), { n: 1 });
    await eventually(
      async () =>
        (await listStored(bus.js, bus.jsm, bus.topology.streams.deadLetter.name)).some((d) =>
          d.reason?.includes("this event breaks the handler"),
        ),
      { message: "dead-lettered after its own attempts", timeoutMs: 20_000 },
    );
    await consumer.stop();
  }, 30_000);

  it("a hung handler is given up at its deadline, so the slot is freed and the message retried", async () => {
    let calls = 0;
    const consumer = await runConsumer({
      ...base("hung"),
      concurrency: 1,
      handlerTimeoutMs: 200,
      handle: async () => {
        calls++;
        if (calls === 1) await new Promise(() => undefined); // never settles
      },
    });
    await publishJson(bus.js, bus.topology.subjects.messagingEvent("hung"), { n: 1 });
    await publishJson(bus.js, bus.topology.subjects.messagingEvent("hung"), { n: 2 });
    await eventually(() => calls >= 3, {
      message: "retried and the next message handled",
      timeoutMs: 10_000,
    });
    await eventually(
      async () =>
        (await bus.jsm.consumers.info(bus.topology.streams.events.name, "hung")).num_ack_pending === 0,
    );
    await consumer.stop();
  });

  it("onDeadLetter runs before the message is terminated; if it fails the message is kept and tried again", async () => {
    const recorded: string[] = [];
    let hookFailures = 1;
    const consumer = await runConsumer({
      ...base("hook"),
      handle: (msg) => {
        decodeMessage(msg, z.object({ n: z.number() }), "test event");
        return Promise.resolve();
      },
      onDeadLetter: async (_msg, reason) => {
        if (hookFailures-- > 0) throw new Error("database blip");
        recorded.push(reason);
      },
    });
    await bus.js.publish(bus.topology.subjects.messagingEvent("hook"), new TextEncoder().encode("{not json"));
    await eventually(() => recorded.length === 1, {
      message: "hook ran after its failure",
      timeoutMs: 20_000,
    });
    expect(recorded[0]).toMatch(/^undecodable test event: not JSON/);
    await eventually(
      async () =>
        (await bus.jsm.consumers.info(bus.topology.streams.events.name, "hook")).num_ack_pending === 0,
    );
    const dead = (await listStored(bus.js, bus.jsm, bus.topology.streams.deadLetter.name)).filter(
      (d) => d.headers["Sb-Stage"] === "hook",
    );
    expect(dead).toHaveLength(1); // the second dead-lettering was deduplicated
    await consumer.stop();
  }, 30_000);
});
