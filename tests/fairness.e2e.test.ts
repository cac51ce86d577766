import { connectBus, listStored } from "@switchboard/bus";
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
const median = (values: number[]) => quantile(values, 0.5);

describe("fair per-page processing: one flooding page does not starve the others", () => {
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

  beforeAll(async () => {
    system = await startSystem({
      PAGE_MESSAGE_RATE: String(PAGE_RATE),
      PAGE_MESSAGE_BURST: "100",
      PSID_FLOOD_THRESHOLD: "60",
      PSID_FLOOD_WINDOW: "10m",
      ROUTER_MAX_ACK_PENDING: "20000",
      ROUTER_CONCURRENCY: "128",
      LOG_LEVEL: "warn",
    });
    for (const page of [FLOOD, QUIET]) {
      await system.fakeMeta("/pages", page);
      const out = await system.cli(
        ["pages", "connect", "--page-id", page.pageId, "--name", page.name, "--company", "fair"],
        page.token,
      );
      expect(out.stdout).toContain(`connected page ${page.pageId}`);
    }
  });

  afterAll(async () => {
    await system?.stop();
  });

  it("stores all 5,050; the quiet page stays fast, the flood's excess is delayed, not lost; floods are flagged", async () => {
    // 5,000 messages for one page in a burst (Meta batches: 100 entries a POST), 4 POSTs at a time …
    const floodBodies = Array.from({ length: (FLOOD_PEOPLE * FLOOD_EACH) / 100 }, (_, b) =>
      Array.from({ length: 100 }, (_, i) => {
        const n = b * 100 + i;
        return entry(FLOOD.pageId, `81${String(n % FLOOD_PEOPLE).padStart(4, "0")}`, `m_flood_${n}`);
      }),
    );
    const flood = (async () => {
      for (let i = 0; i < floodBodies.length; i += 4)
        await Promise.all(floodBodies.slice(i, i + 4).map(post));
    })();
    // … while the other page's customers write 50 messages, one webhook each, during the burst.
    const quiet = (async () => {
      for (let n = 0; n < QUIET_PEOPLE * QUIET_EACH; n++) {
        await post([entry(QUIET.pageId, `82${String(n % QUIET_PEOPLE).padStart(4, "0")}`, `m_quiet_${n}`)]);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await Promise.all([flood, quiet]);

    await eventually(async () => (await system.db.message.count()) === 5050, {
      timeoutMs: 180_000,
      intervalMs: 1000,
      message: "all 5,050 messages stored",
    });
    const latencies = async (pageId: string) =>
      (
        await system.db.message.findMany({ where: { pageId }, select: { sentAt: true, createdAt: true } })
      ).map((m) => m.createdAt.getTime() - m.sentAt.getTime());
    const quietLatencies = await latencies(QUIET.pageId);
    const floodLatencies = await latencies(FLOOD.pageId);
    expect(quietLatencies).toHaveLength(50);
    expect(floodLatencies).toHaveLength(5000);
    expect(p99(quietLatencies)).toBeLessThanOrEqual(QUIET_P99_BOUND_MS);
    expect(p99(quietLatencies)).toBeLessThan(median(floodLatencies) / 2);
    // At 100 messages/s the flood's last messages waited about (5,000 − burst) / 100 s: delayed, not dropped.
    expect(Math.max(...floodLatencies)).toBeGreaterThan(30_000);

    const metrics = await (await fetch(`${system.services["page-router"].url}/metrics`)).text();
    const sample = (name: string, pageId: string) =>
      Number(
        metrics
          .split("\n")
          .find((l) => l.startsWith(`${name}{`) && l.includes(`page_id="${pageId}"`))
          ?.split(" ")
          .pop() ?? 0,
      );
    expect(sample("switchboard_router_entries_delayed_total", FLOOD.pageId)).toBeGreaterThan(4000);
    expect(sample("switchboard_router_entries_delayed_total", QUIET.pageId)).toBe(0);
    expect(sample("switchboard_router_psid_floods_flagged_total", FLOOD.pageId)).toBe(FLOOD_PEOPLE);
    expect(sample("switchboard_router_psid_floods_flagged_total", QUIET.pageId)).toBe(0);

    const bus = await connectBus({
      servers: [system.env.NATS_URL!],
      name: "fairness-e2e",
      namespace: system.env.BUS_NAMESPACE!,
      log: createLogger({ service: "e2e", level: "silent" }),
      streams: "none",
    });
    try {
      const { streams, subjects } = bus.topology;
      expect(await listStored(bus.js, bus.jsm, streams.deadLetter.name, subjects.deadLetters)).toHaveLength(
        0,
      );
      const flags = await listStored(
        bus.js,
        bus.jsm,
        streams.domain.name,
        subjects.domainEvent(PSID_FLOOD_FLAGGED, FLOOD.pageId),
      );
      expect(flags).toHaveLength(FLOOD_PEOPLE);
      const first = PsidFloodFlaggedEvent.parse(JSON.parse(new TextDecoder().decode(flags[0]!.data)));
      expect(first).toMatchObject({ pageId: FLOOD.pageId, threshold: 60 });
    } finally {
      await bus.drain();
    }
  }, 300_000);
});
