import { createTokenCipher, generateTokenKey } from "@switchboard/crypto";
import { applyMigrations, createDb, type Db } from "@switchboard/db";
import { createFakeMeta, type FakeMeta, type RunningFakeMeta } from "@switchboard/fake-meta";
import { createGraphClient, type GraphClient } from "@switchboard/graph-api";
import { createLogger } from "@switchboard/observability";
import { encryptPageToken } from "@switchboard/pages";
import { createTestDatabase, type TestDatabase } from "@switchboard/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_SUBSCRIBED_FIELDS, INSTAGRAM_DEFAULT_SUBSCRIBED_FIELDS } from "./fields";
import {
  inspectSubscription,
  reconcileSubscription,
  type SubscriptionContext,
  unsubscribePage,
} from "./subscription";

const APP_ID = "100000000000001";
const APP_SECRET = "subscriptions-test-secret";
const log = createLogger({ service: "subscriptions-test", level: "silent" });
const cipher = createTokenCipher(generateTokenKey("k1"));

/** A database whose page reads fail `times` times, as during a failover: the rest of it answers. */
function failingPageReads(db: Db, times: number): Db {
  let left = times;
  const pageConnection = new Proxy(db.pageConnection, {
    get(target, property) {
      const value = Reflect.get(target, property, target);
      if (property !== "findUnique") return value;
      return async (args: unknown) => {
        if (left > 0) {
          left--;
          throw new Error("Connection terminated unexpectedly");
        }
        return value.call(target, args as never);
      };
    },
  });
  return new Proxy(db, {
    get: (target, property) =>
      property === "pageConnection" ? pageConnection : Reflect.get(target, property, target),
  });
}

describe("page subscriptions: which failures are the page's", () => {
  let database: TestDatabase;
  let db: Db;
  let fake: FakeMeta;
  let meta: RunningFakeMeta;
  let graph: GraphClient;

  beforeAll(async () => {
    database = await createTestDatabase(applyMigrations);
    db = createDb(database.url);
    fake = createFakeMeta({ appSecret: APP_SECRET, appId: APP_ID, ingressUrl: "http://127.0.0.1:9/unused" });
    meta = await fake.listen(0);
    graph = createGraphClient({
      baseUrl: meta.url,
      version: "v21.0",
      appSecret: APP_SECRET,
      timeoutMs: 3000,
      maxRetries: 0,
    });
  });

  afterAll(async () => {
    await meta?.close();
    await db?.$disconnect();
    await database?.drop();
  });

  const context = (overrides: Partial<SubscriptionContext> = {}): SubscriptionContext => ({
    db,
    cipher,
    graph,
    appId: APP_ID,
    desiredFields: DEFAULT_SUBSCRIBED_FIELDS,
    log,
    ...overrides,
  });

  const addPage = async (pageId: string, pageCipher = cipher) => {
    const token = `EAAB-${pageId}`;
    fake.state.addPage({ pageId, token });
    await db.pageConnection.create({
      data: {
        pageId,
        companyId: "acme",
        name: `Page ${pageId}`,
        pageAccessTokenEnc: encryptPageToken(pageCipher, pageId, token),
      },
    });
  };

  it("lets a database failure while reading the token propagate: nothing recorded, Meta not called, and the retry subscribes", async () => {
    await addPage("3001");
    const flaky = context({ db: failingPageReads(db, 1) });

    await expect(reconcileSubscription(flaky, "3001", "subscribe")).rejects.toThrow(
      /Connection terminated unexpectedly/,
    );
    expect(await db.pageSubscription.findUnique({ where: { pageId: "3001" } })).toBeNull();
    expect(fake.state.callsTo("3001")).toEqual([]);

    // The caller's retry (the consumer redelivers the event) finds the database back.
    const retried = await reconcileSubscription(flaky, "3001", "subscribe");
    expect(retried).toMatchObject({ action: "subscribed", status: "subscribed", problem: null });
    expect(retried.failure).toBeUndefined();
  });

  it("with the database unreachable, rejects every operation instead of reporting an unreadable token", async () => {
    await addPage("3101");
    // Nothing listens on port 1: every query fails to connect.
    const unreachable = createDb("postgresql://postgres@127.0.0.1:1/switchboard", { poolSize: 1 });
    try {
      const down = context({ db: unreachable });
      await expect(inspectSubscription(down, "3101")).rejects.toThrow();
      await expect(reconcileSubscription(down, "3101", "reconcile")).rejects.toThrow();
      await expect(unsubscribePage(down, "3101")).rejects.toThrow();
      expect(fake.state.callsTo("3101")).toEqual([]);
      expect(await db.pageSubscription.findUnique({ where: { pageId: "3101" } })).toBeNull();
    } finally {
      await unreachable.$disconnect();
    }
  });

  it("records a token that cannot be decrypted as the page's problem, not retryable, without calling Meta", async () => {
    // Encrypted with a key this deployment no longer has.
    await addPage("3201", createTokenCipher(generateTokenKey("retired")));

    const result = await reconcileSubscription(context(), "3201", "subscribe");
    expect(result).toMatchObject({ action: "failed", status: "error" });
    expect(result.failure).toMatchObject({ kind: "token_unreadable", retryable: false });
    expect(result.problem).toMatch(/cannot be decrypted \(is its key still in TOKEN_ENCRYPTION_KEYS\?\)/);
    expect(result.problem).not.toContain("EAAB");
    const row = await db.pageSubscription.findUnique({ where: { pageId: "3201" } });
    expect(row).toMatchObject({ status: "error", consecutiveFailures: 1 });
    expect(row?.lastError).toContain("cannot be decrypted");

    const inspected = await inspectSubscription(context(), "3201");
    expect(inspected.failure?.kind).toBe("token_unreadable");
    expect(fake.state.callsTo("3201")).toEqual([]);
  });

  it("adds the fields new in the defaults to a page subscribed before them at its next check, removing none", async () => {
    await addPage("3301");
    const before = [
      "messages",
      "messaging_postbacks",
      "message_deliveries",
      "message_reads",
      "message_echoes",
      "message_reactions",
      "messaging_referrals",
      "messaging_optins",
      "feed",
    ];
    fake.state.subscribe("3301", before);
    const result = await reconcileSubscription(context(), "3301", "reconcile");
    expect(result).toMatchObject({ action: "repaired", status: "subscribed" });
    expect(result.before).toEqual([...before].sort());
    const now = fake.state.subscriptions("3301") ?? [];
    for (const field of [...DEFAULT_SUBSCRIBED_FIELDS, "feed"]) expect(now).toContain(field);
  });

  describe("Instagram accounts", () => {
    const IG_APP_ID = "200000000000002";
    let igFake: FakeMeta;
    let igMeta: RunningFakeMeta;
    let igContext: SubscriptionContext;

    beforeAll(async () => {
      igFake = createFakeMeta({
        appSecret: APP_SECRET,
        appId: APP_ID,
        instagramAppId: IG_APP_ID,
        ingressUrl: "http://127.0.0.1:9/unused",
      });
      igMeta = await igFake.listen(0);
      const client = (platform: "messenger" | "instagram") =>
        createGraphClient({
          platform,
          baseUrl: platform === "instagram" ? igMeta.instagramUrl : igMeta.url,
          version: "v21.0",
          appSecret: APP_SECRET,
          timeoutMs: 3000,
          maxRetries: 0,
        });
      igContext = context({
        graph: client("messenger"),
        instagram: {
          graph: client("instagram"),
          appId: IG_APP_ID,
          desiredFields: INSTAGRAM_DEFAULT_SUBSCRIBED_FIELDS,
        },
      });
    });

    afterAll(async () => {
      await igMeta?.close();
    });

    const addAccount = async (pageId: string, platform: "messenger" | "instagram") => {
      const token = platform === "instagram" ? `IGAA-${pageId}` : `EAAB-${pageId}`;
      igFake.state.addPage({ pageId, token, platform });
      await db.pageConnection.create({
        data: {
          pageId,
          companyId: "acme",
          name: `${platform} ${pageId}`,
          platform,
          pageAccessTokenEnc: encryptPageToken(cipher, pageId, token),
        },
      });
    };

    it("subscribes an account on the Instagram host with its token and Instagram's fields, verifies, repairs and unsubscribes, beside a Page on the Facebook host", async () => {
      await addAccount("17841400000004001", "instagram");
      await addAccount("4002", "messenger");

      const ig = await reconcileSubscription(igContext, "17841400000004001", "subscribe");
      expect(ig).toMatchObject({ action: "subscribed", status: "subscribed", problem: null });
      expect(ig.after).toEqual([...INSTAGRAM_DEFAULT_SUBSCRIBED_FIELDS].sort());
      const igCalls = igFake.state.callsTo("17841400000004001");
      expect(igCalls.map((c) => [c.host, c.method, c.endpoint])).toEqual([
        ["instagram", "POST", "subscribed_apps"],
        ["instagram", "GET", "subscribed_apps"],
      ]);
      expect(igCalls[0]!.query.subscribed_fields).toBe(INSTAGRAM_DEFAULT_SUBSCRIBED_FIELDS.join(","));
      expect(igCalls.every((c) => c.token === "IGAA-17841400000004001" && c.appsecretProofValid)).toBe(true);

      const page = await reconcileSubscription(igContext, "4002", "subscribe");
      expect(page).toMatchObject({ action: "subscribed", status: "subscribed" });
      expect(igFake.state.callsTo("4002").every((c) => c.host === "facebook")).toBe(true);
      expect(page.after).toEqual([...DEFAULT_SUBSCRIBED_FIELDS].sort());

      // Someone removed the subscription: the periodic check puts it back, on the Instagram host.
      igFake.state.dropSubscription("17841400000004001");
      const repaired = await reconcileSubscription(igContext, "17841400000004001", "reconcile");
      expect(repaired).toMatchObject({ action: "repaired", status: "subscribed" });
      const row = await db.pageSubscription.findUniqueOrThrow({ where: { pageId: "17841400000004001" } });
      expect(row.desiredFields).toEqual([...INSTAGRAM_DEFAULT_SUBSCRIBED_FIELDS]);

      const gone = await unsubscribePage(igContext, "17841400000004001");
      expect(gone).toMatchObject({ action: "unsubscribed", status: "unsubscribed" });
      expect(igFake.state.callsTo("17841400000004001").at(-1)).toMatchObject({
        host: "instagram",
        method: "DELETE",
      });
      expect(igFake.state.subscriptions("17841400000004001")).toBeUndefined();
    });

    it("refuses to treat an Instagram account as a Page when the Instagram settings are missing", async () => {
      await addAccount("17841400000004003", "instagram");
      await expect(reconcileSubscription(context(), "17841400000004003", "subscribe")).rejects.toThrow(
        /INSTAGRAM_APP_ID/,
      );
      expect(igFake.state.callsTo("17841400000004003")).toEqual([]);
    });
  });
});
