import { type JetStreamManager, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { busTopology } from "@switchboard/contracts";
import { createLogger } from "@switchboard/observability";
import { testServices, uniqueId } from "@switchboard/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { connectBus, deleteStreams, provisionStreams, StreamsMissingError, verifyStreams } from "./index";

const log = createLogger({ service: "streams-test", level: "silent" });
const HOUR_NS = 3_600_000 * 1_000_000;

describe("stream ownership", () => {
  let nc: NatsConnection;
  let namespace: string;

  beforeEach(async () => {
    nc = await connect({ servers: [testServices().natsUrl] });
    namespace = uniqueId("own");
  });
  afterEach(async () => {
    await deleteStreams(await jetstreamManager(nc), busTopology(namespace));
    await nc.close();
  });

  it("a service refuses to start without its streams, naming them and the command that creates them", async () => {
    const error = await connectBus({
      servers: [testServices().natsUrl],
      name: "svc",
      namespace,
      log,
      streamsWaitMs: 0,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StreamsMissingError);
    expect((error as Error).message).toContain(`${namespace.toUpperCase()}_WEBHOOKS`);
    expect((error as Error).message).toContain("pnpm bus:migrate");
  });

  it("services and operator commands change nothing an operator tuned on a stream", async () => {
    const jsm = await jetstreamManager(nc);
    const topology = busTopology(namespace);
    await provisionStreams(jsm, topology);
    const name = topology.streams.webhooks.name;
    const info = await jsm.streams.info(name);
    await jsm.streams.update(name, { ...info.config, max_age: 48 * HOUR_NS, duplicate_window: HOUR_NS });

    // What every service and `pnpm sb …` does on connect.
    const bus = await connectBus({ servers: [testServices().natsUrl], name: "svc", namespace, log });
    await bus.drain();

    const after = await jsm.streams.info(name);
    expect(after.config.max_age).toBe(48 * HOUR_NS);
    expect(after.config.duplicate_window).toBe(HOUR_NS);
  });

  it("provisioning applies the contracts' policy, bounds the replay streams in bytes, and reports what changed", async () => {
    const jsm = await jetstreamManager(nc);
    const topology = busTopology(namespace);
    const first = await provisionStreams(jsm, topology, { unroutedMaxBytes: 1024 * 1024 });
    expect(first.every((c) => c.action === "created")).toBe(true);
    expect((await jsm.streams.info(topology.streams.unrouted.name)).config.max_bytes).toBe(1024 * 1024);
    expect((await jsm.streams.info(topology.streams.deadLetter.name)).config.max_bytes).toBe(1024 ** 3);

    const again = await provisionStreams(jsm, topology, { unroutedMaxBytes: 1024 * 1024 });
    expect(again.every((c) => c.action === "unchanged")).toBe(true);

    const resized = await provisionStreams(jsm, topology, { unroutedMaxBytes: 2 * 1024 * 1024 });
    const unrouted = resized.find((c) => c.stream === topology.streams.unrouted.name)!;
    expect(unrouted.action).toBe("updated");
    expect(unrouted.changes).toEqual([`max_bytes: ${1024 * 1024} → ${2 * 1024 * 1024}`]);
  });

  it("a full unrouted stream refuses new entries instead of dropping kept ones", async () => {
    const jsm = await jetstreamManager(nc);
    const topology = busTopology(namespace);
    await provisionStreams(jsm, topology, { unroutedMaxBytes: 4096 });
    const bus = await connectBus({ servers: [testServices().natsUrl], name: "svc", namespace, log });
    try {
      const subject = topology.subjects.unrouted("p1");
      let refused: unknown;
      for (let i = 0; i < 20 && !refused; i++) {
        await bus.js.publish(subject, new Uint8Array(500)).catch((e: unknown) => {
          refused = e;
        });
      }
      expect(String(refused)).toMatch(/maximum bytes|resource limits|exceeded/i);
      const info = await jsm.streams.info(topology.streams.unrouted.name);
      expect(info.state.first_seq).toBe(1); // nothing kept was dropped
      // Healthy pages' entries still go in.
      await expect(
        bus.js.publish(topology.subjects.webhookEntry("p2"), new Uint8Array(500)),
      ).resolves.toBeTruthy();
    } finally {
      await bus.drain();
    }
  });
});

describe("verifyStreams while the cluster is busy", () => {
  // A 3-node cluster creating R3 streams for a migration can leave a `STREAM.INFO` unanswered: that is
  // "not known yet", not a reason for the service to exit (CI saw ingress crash-loop on it).
  it("keeps waiting through request timeouts and returns once every stream answers", async () => {
    const topology = busTopology("busy");
    let calls = 0;
    const jsm = {
      streams: {
        async info(name: string) {
          calls++;
          if (calls <= 3) {
            const error = new Error("timeout");
            error.name = "TimeoutError";
            throw error;
          }
          return { config: { name } };
        },
      },
    } as unknown as JetStreamManager;
    const waits: string[][] = [];
    await verifyStreams(jsm, topology, {
      waitMs: 10_000,
      onWait: (missing) => waits.push(missing),
      pauseMs: 1,
    });
    expect(waits.length).toBeGreaterThan(0);
    expect(waits[0]).toContain(topology.streams.webhooks.name);
  });

  it("still gives up at the deadline, naming the streams it could not see", async () => {
    const topology = busTopology("busy");
    const jsm = {
      streams: {
        async info() {
          const error = new Error("timeout");
          error.name = "TimeoutError";
          throw error;
        },
      },
    } as unknown as JetStreamManager;
    const error = await verifyStreams(jsm, topology, { waitMs: 50, pauseMs: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StreamsMissingError);
    expect((error as Error).message).toContain(topology.streams.webhooks.name);
  });

  it("fails at once on an error that waiting cannot fix", async () => {
    const jsm = {
      streams: {
        async info() {
          throw new Error("authorization violation");
        },
      },
    } as unknown as JetStreamManager;
    await expect(verifyStreams(jsm, busTopology("busy"), { waitMs: 10_000, pauseMs: 1 })).rejects.toThrow(
      /authorization violation/,
    );
  });
});
