import { createTokenCipher, generateTokenKey } from "@switchboard/crypto";
import { applyMigrations, createDb, type Db } from "@switchboard/db";
import { createFakeMeta, type FakeMeta, type RunningFakeMeta } from "@switchboard/fake-meta";
import { createGraphClient, type GraphClient } from "@switchboard/graph-api";
import { createLogger } from "@switchboard/observability";
import { encryptPageToken } from "@switchboard/pages";
import { createTestDatabase, type TestDatabase } from "@switchboard/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_SUBSCRIBED_FIELDS } from "./fields";
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
});
