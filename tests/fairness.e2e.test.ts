import { type Bus, connectBus, listStored } from "@switchboard/bus";
import {
  buildTextMessageItem,
  PSID_FLOOD_FLAGGED,
  PsidFloodFlaggedEvent,
  webhookSignature,
} from "@switchboard/contracts";
import { createLogger } from "@switchboard/observability";
import { eventually } from "@switchboard/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type System, startSystem } from "./harness";

const FLOOD = { pageId: "620000000000001", name: "Flood Shop", token: "EAAB-flood-page" };
const QUIET = { pageId: "620000000000002", name: "Quiet Shop", token: "EAAB-quiet-page" };
const SOLO = { pageId: "620000000000003", name: "Solo Shop", token: "EAAB-solo-page" };
const FLOOD_PEOPLE = 50;
const FLOOD_EACH = 100; // 5,000 messages
const QUIET_PEOPLE = 10;
const QUIET_EACH = 5; // 50 messages
/**
 * The stated bound on the quiet page's p99 (Meta timestamp → committed row) while the other page floods:
 * 20 s on a shared 2-core machine, and less than half the flood's own median. Its messages wait only for
 * the page-router's one cheap pass over the flood's entries (measured 2.5–5 s on a quiet machine, up to
 * 13 s with other suites running); without fair share they waited for the flood to be stored (23 s).
 */
const QUIET_P99_BOUND_MS = 20_000;
/** Below what the message-service stores on this machine (~175–250 msg/s in pnpm bench). */
const PAGE_RATE = 100;

const quantile = (values: number[], q: number) =>
  [...values].sort((a, b) => a - b)[Math.ceil(values.length * q) - 1]!;
const p99 = (values: number[]) => quantile(values, 0.99);

/** A running system and what the fairness tests do with it. */
function fairnessSystem() {
  let system: System;
  const post = async (entries: unknown[]) => {
    const raw = JSON.stringify({ object: "page", entry: entries });
    const res = await fetch(`${system.ingressUrl}/webhooks/facebook`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-hub-signature-256": webhookSignature(raw, system.appSecret),
      },
      body: raw,
    });
    expect(res.status).toBe(200);
  };
  const entry = (pageId: string, psid: string, mid: string) => {
    const timestamp = Date.now();
    return {
      id: pageId,
      time: timestamp,
      messaging: [buildTextMessageItem({ pageId, psid, mid, timestamp })],
    };
  };

  const start = async (env: Record<string, string>, pages: (typeof FLOOD)[]) => {
    system = await startSystem({
      PAGE_MESSAGE_RATE: String(PAGE_RATE),
      PAGE_MESSAGE_BURST: "100",
      PSID_FLOOD_THRESHOLD: "60",
      PSID_FLOOD_WINDOW: "10m",
      LOG_LEVEL: "warn",
      ...env,
    });
    for (const page of pages) {
      await system.fakeMeta("/pages", page);
      const out = await system.cli(
        ["pages", "connect", "--page-id", page.pageId, "--name", page.name, "--company", "fair"],
        page.token,
      );
      expect(out.stdout).toContain(`connected page ${page.pageId}`);
    }
  };
  /** Meta timestamp → committed row, per message of the page. */
  const latencies = async (pageId: string) =>
    (await system.db.message.findMany({ where: { pageId }, select: { sentAt: true, createdAt: true } })).map(
      (m) => m.createdAt.getTime() - m.sentAt.getTime(),
    );
  const storedOf = (...pageIds: string[]) => system.db.message.count({ where: { pageId: { in: pageIds } } });
  /** A page-router counter or gauge for one page (0 when the page has no sample). */
  const routerSample = async (name: string, pageId: string) => {
    const metrics = await (await fetch(`${system.services["page-router"].url}/metrics`)).text();
    const line = metrics
      .split("\n")
      .find((l) => l.startsWith(`${name}{`) && l.includes(`page_id="${pageId}"`));
    return Number(line?.split(" ").pop() ?? 0);
  };
  /** Opens the run's bus for a look at its streams. */
  const withBus = async <T>(look: (bus: Bus) => Promise<T>) => {
    const bus = await connectBus({
      servers: [system.env.NATS_URL!],
      name: "fairness-e2e",
      namespace: system.env.BUS_NAMESPACE!,
      log: createLogger({ service: "e2e", level: "silent" }),
      streams: "none",
    });
    try {
      return await look(bus);
    } finally {
      await bus.drain();
    }
  };
  const deadLetters = () =>
    withBus((bus) =>
      listStored(bus.js, bus.jsm, bus.topology.streams.deadLetter.name, bus.topology.subjects.deadLetters),
    );
  const overflowLeft = () =>
    withBus(async (bus) => (await bus.jsm.streams.info(bus.topology.streams.overflow.name)).state.messages);
  /** `count` entries for the page in bodies of 100 (Meta batches), `parallel` POSTs at a time. */
  const flood = async (pageId: string, count: number, parallel: number, tag: string, people = 50) => {
    const bodies = Array.from({ length: Math.ceil(count / 100) }, (_, b) =>
      Array.from({ length: Math.min(100, count - b * 100) }, (_, i) => {
        const n = b * 100 + i;
        return entry(pageId, `8${tag}${String(n % people).padStart(4, "0")}`, `m_${tag}_${n}`);
      }),
    );
    for (let i = 0; i < bodies.length; i += parallel) {
      await Promise.all(bodies.slice(i, i + parallel).map(post));
    }
  };
  /** One webhook per message, as a page's customers write, every 20 ms or so. */
  const trickle = async (pageId: string, count: number, tag: string, people = 10) => {
    for (let n = 0; n < count; n++) {
      await post([entry(pageId, `8${tag}${String(n % people).padStart(4, "0")}`, `m_${tag}_${n}`)]);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return {
    start,
    stop: () => system?.stop(),
    get system() {
      return system;
    },
    latencies,
    storedOf,
    routerSample,
    withBus,
    deadLetters,
    overflowLeft,
    flood,
    trickle,
  };
}

describe("fair per-page processing: one flooding page does not starve the others", () => {
  const fair = fairnessSystem();
  const { latencies, storedOf, routerSample, flood, trickle } = fair;

  beforeAll(() =>
    fair.start({ ROUTER_MAX_ACK_PENDING: "20000", ROUTER_CONCURRENCY: "128" }, [FLOOD, QUIET, SOLO]),
  );
  afterAll(() => fair.stop());

  it("does not shape a page alone, however far above PAGE_MESSAGE_RATE (work-conserving)", async () => {
    // 1,000 messages at once, ten times PAGE_RATE (and ten bursts): shaped, about 900 would be delayed.
    await flood(SOLO.pageId, 1000, 10, "3", 100);
    await eventually(async () => (await storedOf(SOLO.pageId)) === 1000, {
      timeoutMs: 120_000,
      intervalMs: 500,
      message: "all 1,000 messages of the page alone stored",
    });
    expect(
      await routerSample("switchboard_router_entries_received_total", SOLO.pageId),
    ).toBeGreaterThanOrEqual(1000);
    expect(await routerSample("switchboard_router_entries_delayed_total", SOLO.pageId)).toBe(0);
    expect(await routerSample("switchboard_router_overflow_drained_total", SOLO.pageId)).toBe(0);
    // Past the active-pages window: the next test starts with no page active.
    await new Promise((r) => setTimeout(r, 1500));
  }, 180_000);

  it("stores all 5,050; the quiet page stays fast, the flood's excess waits in its overflow, not lost; floods are flagged", async () => {
    // 5,000 messages for one page in a burst (Meta batches: 100 entries a POST), 4 POSTs at a time …
    // … while the other page's customers write 50 messages, one webhook each, during the burst.
    await Promise.all([
      flood(FLOOD.pageId, FLOOD_PEOPLE * FLOOD_EACH, 4, "1", FLOOD_PEOPLE),
      trickle(QUIET.pageId, QUIET_PEOPLE * QUIET_EACH, "2", QUIET_PEOPLE),
    ]);

    await eventually(async () => (await storedOf(FLOOD.pageId, QUIET.pageId)) === 5050, {
      timeoutMs: 180_000,
      intervalMs: 1000,
      message: "all 5,050 messages stored",
    });
    const quietLatencies = await latencies(QUIET.pageId);
    const floodLatencies = await latencies(FLOOD.pageId);
    expect(quietLatencies).toHaveLength(50);
    expect(floodLatencies).toHaveLength(5000);
    expect(p99(quietLatencies)).toBeLessThanOrEqual(QUIET_P99_BOUND_MS);
    // Without fair share the quiet page waited for the whole flood to be stored; with it, for the router's
    // pass over the flood's entries. (Not the flood's median: a page alone is no longer slowed, so the
    // flood's bulk goes out at full speed as soon as the quiet page is done.)
    expect(p99(quietLatencies)).toBeLessThan(Math.max(...floodLatencies) / 2);

    // Shaped while the quiet page was writing; every entry moved to the overflow came back from it.
    const delayed = await routerSample("switchboard_router_entries_delayed_total", FLOOD.pageId);
    expect(delayed).toBeGreaterThan(0);
    expect(await routerSample("switchboard_router_overflow_drained_total", FLOOD.pageId)).toBe(delayed);
    expect(await routerSample("switchboard_router_entries_delayed_total", QUIET.pageId)).toBe(0);
    expect(await fair.overflowLeft()).toBe(0);
    expect(await routerSample("switchboard_router_psid_floods_flagged_total", FLOOD.pageId)).toBe(
      FLOOD_PEOPLE,
    );
    expect(await routerSample("switchboard_router_psid_floods_flagged_total", QUIET.pageId)).toBe(0);

    expect(await fair.deadLetters()).toHaveLength(0);
    const flags = await fair.withBus((bus) =>
      listStored(
        bus.js,
        bus.jsm,
        bus.topology.streams.domain.name,
        bus.topology.subjects.domainEvent(PSID_FLOOD_FLAGGED, FLOOD.pageId),
      ),
    );
    expect(flags).toHaveLength(FLOOD_PEOPLE);
    const first = PsidFloodFlaggedEvent.parse(JSON.parse(new TextDecoder().decode(flags[0]!.data)));
    expect(first).toMatchObject({ pageId: FLOOD.pageId, threshold: 60 });
  }, 300_000);
});

describe("fair share with few slots on the shared consumer: a flood's excess never stalls the others", () => {
  const fair = fairnessSystem();
  const { latencies, storedOf, routerSample, flood, trickle } = fair;
  // Fewer un-acknowledged entries than the flood's excess: delayed on the shared consumer (nak with a
  // delay, as before), the flood's backlog would hold every slot and the quiet page would wait behind it.
  const MAX_ACK_PENDING = 200;
  const FLOOD_ENTRIES = 1500;

  beforeAll(() =>
    fair.start({ ROUTER_MAX_ACK_PENDING: String(MAX_ACK_PENDING), ROUTER_CONCURRENCY: "32" }, [FLOOD, QUIET]),
  );
  afterAll(() => fair.stop());

  it("routes the quiet page's entries while the flood's excess waits, stores the flood whole, dead-letters nothing", async () => {
    await Promise.all([flood(FLOOD.pageId, FLOOD_ENTRIES, 4, "4"), trickle(QUIET.pageId, 30, "5")]);
    await eventually(async () => (await storedOf(QUIET.pageId)) === 30, {
      timeoutMs: 60_000,
      intervalMs: 500,
      message: "the quiet page's 30 messages stored",
    });
    await eventually(async () => (await storedOf(FLOOD.pageId)) === FLOOD_ENTRIES, {
      timeoutMs: 180_000,
      intervalMs: 1000,
      message: "the whole flood stored",
    });
    expect(p99(await latencies(QUIET.pageId))).toBeLessThanOrEqual(QUIET_P99_BOUND_MS);
    const delayed = await routerSample("switchboard_router_entries_delayed_total", FLOOD.pageId);
    // More of the flood waited than the shared consumer has slots: it waited elsewhere.
    expect(delayed).toBeGreaterThan(MAX_ACK_PENDING);
    expect(await routerSample("switchboard_router_overflow_drained_total", FLOOD.pageId)).toBe(delayed);
    expect(await routerSample("switchboard_router_entries_retried_total", FLOOD.pageId)).toBe(0);
    expect(await fair.overflowLeft()).toBe(0);
    expect(await fair.deadLetters()).toHaveLength(0);
  }, 300_000);
});
