import { type Bus, connectBus, deleteStreams, listStored } from "@switchboard/bus";
import { PageLifecycleEvent } from "@switchboard/contracts";
import { createTokenCipher, generateTokenKey } from "@switchboard/crypto";
import { applyMigrations, createDb, type Db } from "@switchboard/db";
import { createFakeMeta, type FakeMeta, type RunningFakeMeta } from "@switchboard/fake-meta";
import { createGraphClient, type GraphClient } from "@switchboard/graph-api";
import { createLogger, createMetricsRegistry } from "@switchboard/observability";
import { connectPage, readPageToken } from "@switchboard/pages";
import { createTestDatabase, type TestDatabase, testServices, uniqueId } from "@switchboard/testing";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSubscriptionMetrics, type SubscriptionMetrics } from "./metrics";
import { refreshInstagramTokenIfDue, type TokenRefreshDeps } from "./token-refresh";

const APP_SECRET = "token-refresh-secret";
const DAY = 86_400_000;
const cipher = createTokenCipher(generateTokenKey("k1"));

describe("Instagram token refresh", () => {
  let database: TestDatabase;
  let db: Db;
  let bus: Bus;
  let redis: Redis;
  let fake: FakeMeta;
  let meta: RunningFakeMeta;
  let graph: GraphClient;
  let metrics: SubscriptionMetrics;
  const logged: string[] = [];
  const log = createLogger({
    service: "token-refresh-test",
    level: "info",
    destination: { write: (line: string) => logged.push(line) } as never,
  });

  beforeAll(async () => {
    database = await createTestDatabase(applyMigrations);
    db = createDb(database.url);
    bus = await connectBus({
      streams: "provision",
      servers: [testServices().natsUrl],
      name: "token-refresh-test",
      namespace: uniqueId("tr"),
      log: createLogger({ service: "t", level: "silent" }),
    });
    redis = new Redis(testServices().redisUrl);
    fake = createFakeMeta({
      appSecret: APP_SECRET,
      appId: "100000000000001",
      ingressUrl: "http://127.0.0.1:9",
    });
    meta = await fake.listen(0);
    graph = createGraphClient({
      platform: "instagram",
      baseUrl: meta.instagramUrl,
      version: "v21.0",
      appSecret: APP_SECRET,
      maxRetries: 0,
    });
    metrics = createSubscriptionMetrics(createMetricsRegistry("subscription-service"));
  });

  afterAll(async () => {
    await meta?.close();
    await deleteStreams(bus.jsm, bus.topology);
    await bus.drain();
    await redis.quit();
    await db.$disconnect();
    await database.drop();
  });

  const deps = (now: number, overrides: Partial<TokenRefreshDeps> = {}): TokenRefreshDeps => ({
    db,
    bus,
    cipher,
    graph,
    redis,
    keyPrefix: `${uniqueId()}:`,
    log,
    metrics,
    refreshBeforeMs: 10 * DAY,
    now: () => now,
    ...overrides,
  });

  /** An account connected now whose token expires in `expiresInDays` (unknown when undefined). */
  const account = async (pageId: string, expiresInDays?: number) => {
    const token = `IGAA-${pageId}-${uniqueId()}`;
    fake.state.addPage({ pageId, token, platform: "instagram" });
    await connectPage(
      { db, bus, cipher },
      {
        pageId,
        name: `IG ${pageId}`,
        companyId: "acme",
        token,
        platform: "instagram",
        ...(expiresInDays === undefined
          ? {}
          : { tokenExpiresAt: new Date(Date.now() + expiresInDays * DAY) }),
      },
    );
    return token;
  };
  const refreshCalls = () => fake.state.calls.filter((c) => c.endpoint === "refresh_access_token");
  const lifecycle = async (pageId: string) =>
    (await listStored(bus.js, bus.jsm, bus.topology.streams.pages.name))
      .map((m) => PageLifecycleEvent.parse(JSON.parse(new TextDecoder().decode(m.data))))
      .filter((e) => e.pageId === pageId);

  it("leaves a token alone while it is far from expiry or under a day old", async () => {
    await account("17841400000009001", 50);
    expect(await refreshInstagramTokenIfDue(deps(Date.now() + 2 * DAY), "17841400000009001")).toBe("not_due");
    await account("17841400000009002", 5);
    // Meta refuses to refresh a token less than 24 hours old: not even asked.
    expect(await refreshInstagramTokenIfDue(deps(Date.now()), "17841400000009002")).toBe("not_due");
    expect(refreshCalls()).toEqual([]);
  });

  it("refreshes a token near expiry: re-encrypted in place, 60 more days, announced without the token", async () => {
    const old = await account("17841400000009003", 5);
    const now = Date.now() + 2 * DAY;
    expect(await refreshInstagramTokenIfDue(deps(now), "17841400000009003")).toBe("refreshed");
    const fresh = await readPageToken(db, cipher, "17841400000009003");
    expect(fresh).not.toBe(old);
    const row = await db.pageConnection.findUniqueOrThrow({ where: { pageId: "17841400000009003" } });
    expect(row.tokenExpiresAt?.getTime()).toBe(now + 60 * DAY);
    expect(row.pageAccessTokenEnc).not.toContain(fresh);
    expect((await lifecycle("17841400000009003")).at(-1)).toMatchObject({
      type: "page.token_updated",
      reason: "token refreshed",
    });
    const [call] = refreshCalls();
    expect(call).toMatchObject({ host: "instagram", pageId: "17841400000009003" });
    const everything = JSON.stringify(await lifecycle("17841400000009003")) + logged.join("");
    expect(everything).not.toContain(fresh);
    expect(everything).not.toContain(old);
    // Next check: 60 days away, nothing to do.
    expect(await refreshInstagramTokenIfDue(deps(now + DAY), "17841400000009003")).toBe("not_due");
  });

  it("an unknown expiry is learnt by refreshing once the token is a day old", async () => {
    await account("17841400000009004");
    const now = Date.now() + 25 * 3_600_000;
    expect(await refreshInstagramTokenIfDue(deps(now), "17841400000009004")).toBe("refreshed");
    const row = await db.pageConnection.findUniqueOrThrow({ where: { pageId: "17841400000009004" } });
    expect(row.tokenExpiresAt?.getTime()).toBe(now + 60 * DAY);
  });

  it("a token Meta refuses (190) or one already expired moves the account to reauthorization_required", async () => {
    await account("17841400000009005", 3);
    fake.state.revokeToken("17841400000009005");
    expect(await refreshInstagramTokenIfDue(deps(Date.now() + 2 * DAY), "17841400000009005")).toBe(
      "rejected",
    );
    expect(
      await db.pageConnection.findUniqueOrThrow({ where: { pageId: "17841400000009005" } }),
    ).toMatchObject({
      status: "reauthorization_required",
      statusReason: expect.stringContaining("refused to refresh the Instagram token"),
    });

    await account("17841400000009006", 3);
    expect(await refreshInstagramTokenIfDue(deps(Date.now() + 4 * DAY), "17841400000009006")).toBe("expired");
    expect((await lifecycle("17841400000009006")).at(-1)).toMatchObject({
      type: "page.status_changed",
      status: "reauthorization_required",
    });
  });

  it("a passing failure is retried at the next check; two replicas at once refresh once; a reconnect meanwhile wins", async () => {
    await account("17841400000009007", 5);
    const now = Date.now() + 2 * DAY;
    fake.state.injectError("17841400000009007", { endpoint: "refresh_access_token", status: 503, times: 1 });
    expect(await refreshInstagramTokenIfDue(deps(now), "17841400000009007")).toBe("failed");
    expect(
      (await db.pageConnection.findUniqueOrThrow({ where: { pageId: "17841400000009007" } })).status,
    ).toBe("active");

    const shared = deps(now);
    const before = refreshCalls().length;
    const outcomes = await Promise.all([
      refreshInstagramTokenIfDue(shared, "17841400000009007"),
      refreshInstagramTokenIfDue(shared, "17841400000009007"),
    ]);
    expect(outcomes.sort()).toEqual(["busy", "refreshed"]);
    expect(refreshCalls().length - before).toBe(1);

    // An operator reconnects while a refresh of the old token is under way: theirs stays.
    await account("17841400000009008", 5);
    fake.state.injectError("17841400000009008", { endpoint: "refresh_access_token", delayMs: 300, times: 1 });
    const refreshing = refreshInstagramTokenIfDue(deps(Date.now() + 2 * DAY), "17841400000009008");
    await new Promise((r) => setTimeout(r, 100));
    await connectPage(
      { db, bus, cipher },
      {
        pageId: "17841400000009008",
        name: "IG",
        companyId: "acme",
        token: "IGAA-operator",
        platform: "instagram",
      },
    );
    expect(await refreshing).toBe("superseded");
    expect(await readPageToken(db, cipher, "17841400000009008")).toBe("IGAA-operator");
  });
});
