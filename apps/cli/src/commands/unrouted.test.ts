import { type Bus, connectBus, deleteStreams, listStored, publishRaw } from "@switchboard/bus";
import { Headers } from "@switchboard/contracts";
import { generateTokenKey } from "@switchboard/crypto";
import { createLogger } from "@switchboard/observability";
import { testServices, uniqueId } from "@switchboard/testing";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createCliContext } from "../context";
import { buildProgram } from "../program";

describe("pnpm sb unrouted / dlq", () => {
  let bus: Bus;
  let environment: Record<string, string>;

  beforeAll(async () => {
    const namespace = uniqueId("cli");
    bus = await connectBus({
      streams: "provision",
      servers: [testServices().natsUrl],
      name: "cli-unrouted-test",
      namespace,
      log: createLogger({ service: "cli-test", level: "silent" }),
    });
    environment = {
      DATABASE_URL: testServices().databaseUrl,
      NATS_URL: testServices().natsUrl,
      BUS_NAMESPACE: namespace,
      TOKEN_ENCRYPTION_KEYS: generateTokenKey("k1"),
      LOG_LEVEL: "silent",
    };
    const { subjects } = bus.topology;
    // Parked as the page-router parks them: original headers, the reason, where the entry came from.
    const park = (pageId: string, reason: string, data: string) =>
      publishRaw(bus.js, subjects.unrouted(pageId), data, {
        headers: {
          [Headers.traceId]: `trace-${pageId}`,
          [Headers.receivedAt]: 1_700_000_000_000,
          [Headers.reason]: reason,
          [Headers.pageId]: pageId,
          [Headers.originalSubject]: subjects.webhookEntry(pageId),
        },
      });
    await park("1001", "unknown_page", JSON.stringify({ id: "1001", messaging: [{}, {}] }));
    await park("1001", "unknown_page", JSON.stringify({ id: "1001", messaging: [{}] }));
    await park("1002", "undecodable: not JSON", "{nope");
    await publishRaw(bus.js, subjects.unrouted("_invalid"), '{"object":"page"}', {
      headers: { [Headers.reason]: "invalid webhook body: entry required" },
    });
    const deadLetter = (stage: string, pageId: string, reason: string) =>
      publishRaw(bus.js, subjects.deadLetter(stage), JSON.stringify({ id: pageId }), {
        headers: {
          [Headers.reason]: reason,
          [Headers.stage]: stage,
          [Headers.originalSubject]: subjects.webhookEntry(pageId),
          [Headers.deliveries]: 40,
        },
      });
    await deadLetter("page-router", "2001", "failed 40 times: database unreachable");
    await deadLetter("page-router", "2002", "failed 40 times: database unreachable");
    await deadLetter("message-service", "2003", "invalid event");
  });

  afterAll(async () => {
    await deleteStreams(bus.jsm, bus.topology);
    await bus.drain();
  });

  async function sb(...args: string[]): Promise<{ out: string; code: number }> {
    const context = createCliContext(environment);
    let out = "";
    const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
      out += String(chunk);
      return true;
    });
    try {
      await buildProgram(context)
        .exitOverride()
        .parseAsync(["node", "sb", ...args]);
    } finally {
      write.mockRestore();
      await context.close();
    }
    const code = Number(process.exitCode ?? 0);
    process.exitCode = undefined;
    return { out, code };
  }

  const webhookEntries = async (pageId: string) =>
    listStored(
      bus.js,
      bus.jsm,
      bus.topology.streams.webhooks.name,
      bus.topology.subjects.webhookEntry(pageId),
    );

  it("unrouted list shows each waiting entry with its page, reason and item count", async () => {
    const table = await sb("unrouted", "list");
    expect(table.out).toContain("unknown_page");
    expect(table.out).toContain("undecodable: not JSON");
    const rows = JSON.parse((await sb("unrouted", "list", "--json")).out) as Array<Record<string, unknown>>;
    expect(rows.map((r) => [r.pageId, r.reason, r.items])).toEqual([
      ["1001", "unknown_page", 2],
      ["1001", "unknown_page", 1],
      ["1002", "undecodable: not JSON", null],
      ["_invalid", "invalid webhook body: entry required", 0],
    ]);
    const one = JSON.parse((await sb("unrouted", "list", "--page-id", "1002", "--json")).out) as unknown[];
    expect(one).toHaveLength(1);
  });

  it("unrouted replay --page-id sends only that page's entries back to the webhooks stream", async () => {
    const run = await sb("unrouted", "replay", "--page-id", "1001");
    expect(run).toEqual({ out: "replayed 2 entries\n", code: 0 });
    const replayed = await webhookEntries("1001");
    expect(replayed.map((m) => JSON.parse(new TextDecoder().decode(m.data)).messaging.length)).toEqual([
      2, 1,
    ]);
    // The original trace id and receive time travel with the entry; the parking reason does not.
    expect(replayed[0]!.headers[Headers.traceId]).toBe("trace-1001");
    expect(replayed[0]!.headers[Headers.reason]).toBeUndefined();
    const left = JSON.parse((await sb("unrouted", "list", "--json")).out) as Array<{ pageId: string }>;
    expect(left.map((r) => r.pageId)).toEqual(["1002", "_invalid"]);
  });

  it("unrouted replay keeps webhook bodies that failed validation and says so", async () => {
    const run = await sb("unrouted", "replay");
    expect(run.out).toContain("replayed 1 entries");
    expect(run.out).toContain("1 webhook bodies that failed validation are kept");
    expect(await webhookEntries("1002")).toHaveLength(1);
    const left = JSON.parse((await sb("unrouted", "list", "--json")).out) as Array<{ pageId: string }>;
    expect(left.map((r) => r.pageId)).toEqual(["_invalid"]);
  });

  it("dlq list shows stage, reason, original subject and attempts; --stage filters", async () => {
    const rows = JSON.parse((await sb("dlq", "list", "--json")).out) as Array<Record<string, unknown>>;
    expect(rows.map((r) => [r.stage, r.reason, r.attempts])).toEqual([
      ["page-router", "failed 40 times: database unreachable", 40],
      ["page-router", "failed 40 times: database unreachable", 40],
      ["message-service", "invalid event", 40],
    ]);
    expect(rows[0]!.subject).toBe(bus.topology.subjects.webhookEntry("2001"));
    const routerOnly = JSON.parse(
      (await sb("dlq", "list", "--stage", "message-service", "--json")).out,
    ) as unknown[];
    expect(routerOnly).toHaveLength(1);
    expect((await sb("dlq", "list")).out).toContain("failed 40 times");
  });

  it("dlq replay --seq replays exactly the chosen dead letters to their original subject", async () => {
    const rows = JSON.parse((await sb("dlq", "list", "--stage", "page-router", "--json")).out) as Array<{
      seq: number;
    }>;
    const run = await sb("dlq", "replay", "--stage", "page-router", "--seq", String(rows[1]!.seq));
    expect(run).toEqual({ out: "replayed 1 dead letters\n", code: 0 });
    expect(await webhookEntries("2002")).toHaveLength(1);
    expect(await webhookEntries("2001")).toHaveLength(0);

    const missing = await sb("dlq", "replay", "--seq", "999999");
    expect(missing.code).toBe(1);

    const rest = await sb("dlq", "replay");
    expect(rest.out).toBe("replayed 2 dead letters\n");
    expect(JSON.parse((await sb("dlq", "list", "--json")).out)).toEqual([]);
    expect(await webhookEntries("2001")).toHaveLength(1);
  });
});
