import { type Bus, connectBus, deleteStreams } from "@switchboard/bus";
import { createTokenCipher, generateTokenKey } from "@switchboard/crypto";
import { applyMigrations, createDb, type Db } from "@switchboard/db";
import { createFakeMeta, type FakeMeta, type RunningFakeMeta } from "@switchboard/fake-meta";
import { createLogger } from "@switchboard/observability";
import { connectPage } from "@switchboard/pages";
import { DEFAULT_SUBSCRIBED_FIELDS } from "@switchboard/subscriptions";
import { createTestDatabase, type TestDatabase, testServices, uniqueId } from "@switchboard/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { createCliContext } from "../context";
import { buildProgram } from "../program";

const APP_ID = "100000000000001";
const APP_SECRET = "cli-test-app-secret";
const keys = generateTokenKey("k1");
const all = [...DEFAULT_SUBSCRIBED_FIELDS].sort();

describe("pnpm sb subscriptions", () => {
  let database: TestDatabase;
  let db: Db;
  let bus: Bus;
  let fake: FakeMeta;
  let meta: RunningFakeMeta;
  let environment: Record<string, string>;
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    database = await createTestDatabase(applyMigrations);
    db = createDb(database.url);
    const namespace = uniqueId("cli");
    bus = await connectBus({
      streams: "provision",
      servers: [testServices().natsUrl],
      name: "cli-test",
      namespace,
      log: createLogger({ service: "cli-test", level: "silent" }),
    });
    fake = createFakeMeta({ appSecret: APP_SECRET, appId: APP_ID, ingressUrl: "http://127.0.0.1:9/unused" });
    meta = await fake.listen(0);
    environment = {
      DATABASE_URL: database.url,
      NATS_URL: testServices().natsUrl,
      BUS_NAMESPACE: namespace,
      TOKEN_ENCRYPTION_KEYS: keys,
      LOG_LEVEL: "silent",
      FB_APP_ID: APP_ID,
      FB_APP_SECRET: APP_SECRET,
      GRAPH_API_BASE_URL: meta.url,
      GRAPH_API_VERSION: "v21.0",
    };
    const cipher = createTokenCipher(keys);
    const pages: Array<[string, string, string[] | undefined]> = [
      ["3001", "Bakery", all],
      ["3002", "Florist", ["messages", "message_echoes"]],
      ["3003", "Garage", undefined],
      ["3004", "Hotel", all],
    ];
    for (const [pageId, name, fields] of pages) {
      tokens[pageId] = `EAAB-${pageId}-${uniqueId()}`;
      fake.state.addPage({ pageId, token: tokens[pageId] as string, name });
      if (fields) fake.state.subscribe(pageId, fields);
      await connectPage(
        { db, bus, cipher },
        { pageId, name, companyId: "acme", token: tokens[pageId] as string },
      );
    }
    fake.state.revokeToken("3004");
  });

  afterEach(() => {
    process.exitCode = undefined;
  });

  afterAll(async () => {
    await deleteStreams(bus.jsm, bus.topology);
    await bus.drain();
    await meta.close();
    await db.$disconnect();
    await database.drop();
  });

  /** Runs `sb <args>` in-process as `pnpm sb` would, returning what it printed and its exit code. */
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

  it("check prints every page with its problem and exits 1 while any page is not fully subscribed", async () => {
    const table = await sb("subscriptions", "check");
    expect(table.code).toBe(1);
    for (const header of ["page", "name", "subscribed", "fields", "problem"])
      expect(table.out).toContain(header);
    const line = (pageId: string) => table.out.split("\n").find((l) => l.includes(pageId)) ?? "";
    expect(line("3001")).toMatch(/Bakery\s*│\s*yes/);
    expect(line("3002")).toMatch(/Florist\s*│\s*no/);
    expect(line("3002")).toContain("missing fields: messaging_postbacks");
    expect(line("3003")).toContain("app not subscribed");
    expect(line("3004")).toContain("token invalid");

    const json = await sb("subscriptions", "check", "--json");
    expect(json.code).toBe(1);
    const rows = JSON.parse(json.out) as Array<{
      page: string;
      subscribed: boolean | null;
      fields: string[] | null;
    }>;
    expect(Object.fromEntries(rows.map((r) => [r.page, r.subscribed]))).toEqual({
      "3001": true,
      "3002": false,
      "3003": false,
      "3004": null,
    });
    expect(rows.find((r) => r.page === "3001")?.fields).toEqual(all);
    // A check only asks: nothing was POSTed, and no token or proof was printed.
    expect(fake.state.calls.some((c) => c.method !== "GET")).toBe(false);
    expect(table.out + json.out).not.toContain("EAAB");
  });

  it("resubscribe-all repairs each page on its own endpoint, prints what changed, and exits 1 for a page it could not fix", async () => {
    const run = await sb("subscriptions", "resubscribe-all", "--json");
    expect(run.code).toBe(1);
    const rows = JSON.parse(run.out) as Array<{
      page: string;
      change: string;
      after: string[];
      problem: string | null;
    }>;
    const byPage = Object.fromEntries(rows.map((r) => [r.page, r]));
    expect(byPage["3001"]?.change).toBe("unchanged");
    expect(byPage["3002"]?.change).toMatch(/^added message_deliveries, message_edits, message_reactions/);
    expect(byPage["3003"]?.change).toBe("subscribed (was not)");
    expect(byPage["3003"]?.after).toEqual(all);
    expect(byPage["3004"]?.change).toBe("failed");
    expect(byPage["3004"]?.problem).toContain("token invalid");

    for (const pageId of ["3001", "3002", "3003"]) {
      const posts = fake.state.callsTo(pageId, "subscribed_apps").filter((c) => c.method === "POST");
      expect(posts).toHaveLength(1);
      expect(posts[0]?.path).toBe(`/v21.0/${pageId}/subscribed_apps`);
      expect(posts[0]?.token).toBe(tokens[pageId]);
      expect(posts[0]?.appsecretProofValid).toBe(true);
      expect(fake.state.subscriptions(pageId)?.sort()).toEqual(all);
    }
    const page = await db.pageConnection.findUniqueOrThrow({ where: { pageId: "3004" } });
    expect(page.status).toBe("reauthorization_required");
    expect((await db.pageSubscription.findUniqueOrThrow({ where: { pageId: "3003" } })).status).toBe(
      "subscribed",
    );

    // The page left needing re-authorisation is the only problem left.
    const check = await sb("subscriptions", "check", "--json");
    expect(check.code).toBe(1);
    const problems = (JSON.parse(check.out) as Array<{ page: string; problem: string | null }>).filter(
      (r) => r.problem,
    );
    expect(problems.map((r) => r.page)).toEqual(["3004"]);
  });

  it("resubscribe-all --page-id touches only that page; with every page fixed, check exits 0", async () => {
    const cipher = createTokenCipher(keys);
    tokens["3004"] = `EAAB-3004-${uniqueId()}`;
    fake.state.setToken("3004", tokens["3004"]);
    await connectPage(
      { db, bus, cipher },
      { pageId: "3004", name: "Hotel", companyId: "acme", token: tokens["3004"] },
    );
    const postsBefore = fake.state.calls.filter((c) => c.method === "POST").length;

    const single = await sb("subscriptions", "resubscribe-all", "--page-id", "3004");
    expect(single.code).toBe(0);
    expect(single.out).toContain("3004");
    expect(single.out).not.toContain("3001");
    const posts = fake.state.calls.filter((c) => c.method === "POST").slice(postsBefore);
    expect(posts.map((c) => c.pageId)).toEqual(["3004"]);
    expect(posts[0]?.token).toBe(tokens["3004"]);

    const check = await sb("subscriptions", "check");
    expect(check.code).toBe(0);
    expect(check.out).not.toMatch(/│\s*no\s*│/);
  });

  it("pages connect --token-env reads the page token from the CLI's environment, not the process's", async () => {
    environment.SB_TEST_PAGE_TOKEN = `EAAB-3005-${uniqueId()}`;
    const connect = (variable: string) =>
      sb(
        "pages",
        "connect",
        "--page-id",
        "3005",
        "--name",
        "Library",
        "--company",
        "acme",
        "--token-env",
        variable,
      );
    const printed = vi.spyOn(console, "log").mockImplementation(() => undefined);
    try {
      await expect(connect("SB_TEST_UNSET_TOKEN")).rejects.toThrow("$SB_TEST_UNSET_TOKEN is empty");
      await connect("SB_TEST_PAGE_TOKEN");
      expect(printed).toHaveBeenCalledWith("connected page 3005 (Library) for acme");
    } finally {
      printed.mockRestore();
      delete environment.SB_TEST_PAGE_TOKEN;
    }
  });
});
