import { connectBus, listStored } from "@switchboard/bus";
import { createLogger } from "@switchboard/observability";
import { eventually } from "@switchboard/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningConsole, startConsole } from "./console-process";
import { type System, startSystem } from "./harness";

const CANARY_PAGE_ID = "999000000000001";

/** The value of the first sample of `name` carrying `label` (e.g. `result="ok"`), 0 when there is none. */
function sampleValue(metrics: string, name: string, label = ""): number {
  const line = metrics
    .split("\n")
    .find((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && l.includes(label));
  return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : 0;
}

describe("webhook canary: signed webhook → public ingress URL → JetStream → page-router → canary sink", () => {
  let system: System;
  let operatorConsole: RunningConsole;

  beforeAll(async () => {
    system = await startSystem({ CANARY_PAGE_ID });
    operatorConsole = await startConsole(system, {
      CANARY_INGRESS_URL: `${system.ingressUrl}/webhooks/facebook`,
      CANARY_INTERVAL: "300ms",
    });
  });

  afterAll(async () => {
    await operatorConsole?.stop();
    await system?.stop();
  });

  it("completes round trips, measured per stage, and never stores the canary as a customer message", async () => {
    const metrics = await eventually(
      async () => {
        const text = await (await fetch(`${operatorConsole.url}/metrics`)).text();
        return sampleValue(text, "switchboard_canary_received_total", 'result="ok"') >= 3 && text;
      },
      { timeoutMs: 30_000, message: "three canaries back at the sink" },
    );
    expect(sampleValue(metrics, "switchboard_canary_round_trip_seconds_count")).toBeGreaterThanOrEqual(3);
    expect(
      sampleValue(metrics, "switchboard_canary_stage_seconds_count", 'stage="router"'),
    ).toBeGreaterThanOrEqual(3);
    expect(sampleValue(metrics, "switchboard_canary_last_success_timestamp_seconds")).toBeGreaterThan(
      Date.now() / 1000 - 60,
    );
    expect(
      sampleValue(metrics, "switchboard_canary_sent_total", 'outcome="accepted"'),
    ).toBeGreaterThanOrEqual(3);

    // Not a customer message, not a contact, not an unrouted entry for an unknown page.
    expect(await system.db.message.count()).toBe(0);
    expect(await system.db.contact.count()).toBe(0);
    const bus = await connectBus({
      servers: [system.env.NATS_URL!],
      name: "canary-e2e",
      namespace: system.env.BUS_NAMESPACE!,
      log: createLogger({ service: "e2e", level: "silent" }),
      streams: "none",
    });
    try {
      const { streams, subjects } = bus.topology;
      expect(await listStored(bus.js, bus.jsm, streams.unrouted.name, subjects.unroutedAll)).toHaveLength(0);
      expect(await listStored(bus.js, bus.jsm, streams.events.name, subjects.messagingEvents)).toHaveLength(
        0,
      );
      const canaryEvents = await listStored(bus.js, bus.jsm, streams.events.name, subjects.canaryEvents);
      expect(canaryEvents.length).toBeGreaterThanOrEqual(3);
    } finally {
      await bus.drain();
    }
  });
});
