import type { Server } from "node:http";
import { type Bus, connectBus, deleteStreams, listStored, publishRaw } from "@switchboard/bus";
import { Headers } from "@switchboard/contracts";
import { createTokenCipher, generateTokenKey } from "@switchboard/crypto";
import { applyMigrations, createDb, type Db } from "@switchboard/db";
import { createFakeMeta, type FakeMeta, type RunningFakeMeta } from "@switchboard/fake-meta";
import { createGraphClient } from "@switchboard/graph-api";
import { createLogger, createMetricsRegistry, listen } from "@switchboard/observability";
import { connectPage } from "@switchboard/pages";
import { DEFAULT_SUBSCRIBED_FIELDS } from "@switchboard/subscriptions";
import { createTestDatabase, type TestDatabase, testServices, uniqueId } from "@switchboard/testing";
import { createEndpoint } from "@switchboard/webhooks";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ConsoleDeps, createConsoleApp } from "./app";
import { createOperatorAuth, createSignInThrottle, type OperatorAuth, SESSION_COOKIE } from "./auth";
import { registerJetStreamMetrics } from "./metrics";
import { createSessionRevocations } from "./sessions";

const OPERATOR_TOKEN = "operator-token-for-tests-0123456789";
const APP_ID = "100000000000001";
const APP_SECRET = "console-test-secret";
const fields = [...DEFAULT_SUBSCRIBED_FIELDS];
const TWELVE_HOURS = 12 * 3_600_000;

/** Signs in through the form and returns the session cookie as a browser would send it back. */
async function signIn(app: ReturnType<typeof createConsoleApp>): Promise<string> {
  const login = await request(app).post("/login").type("form").send({ token: OPERATOR_TOKEN });
  expect(login.status).toBe(303);
  return String(login.headers["set-cookie"]?.[0]).split(";")[0]!;
}

/** The CSRF field the overview page gives its forms. */
function csrfOf(html: string): string {
  const csrf = /name="csrf" value="([^"]+)"/.exec(html)?.[1];
  expect(csrf).toBeDefined();
  return csrf!;
}

describe("operator console", () => {
  let database: TestDatabase;
  let db: Db;
  let bus: Bus;
  let meta: FakeMeta;
  let metaServer: RunningFakeMeta;
  let app: ReturnType<typeof createConsoleApp>;
  let server: Server;
  let cookie: string;
  let deps: ConsoleDeps;
  /** Another console process on the same database: a second replica, or one with other settings. */
  const replica = (
    options: Partial<Parameters<typeof createOperatorAuth>[0]> = {},
    settings: Pick<ConsoleDeps, "trustProxy"> = {},
  ) =>
    createConsoleApp({
      ...deps,
      ...settings,
      auth: createOperatorAuth({
        operatorToken: OPERATOR_TOKEN,
        sessionTtlMs: TWELVE_HOURS,
        revocations: createSessionRevocations(db),
        ...options,
      }),
    });

  beforeAll(async () => {
    const log = createLogger({ service: "console-test", level: "silent" });
    database = await createTestDatabase(applyMigrations);
    db = createDb(database.url);
    bus = await connectBus({
      streams: "provision",
      servers: [testServices().natsUrl],
      name: "console-test",
      namespace: uniqueId("con"),
      log,
    });
    meta = createFakeMeta({ appSecret: APP_SECRET, appId: APP_ID, ingressUrl: "http://127.0.0.1:9/unused" });
    metaServer = await meta.listen(0, "127.0.0.1");
    const cipher = createTokenCipher(generateTokenKey("k1"));
    meta.state.addPage({ pageId: "1001", token: "token-healthy" });
    meta.state.addPage({ pageId: "1002", token: "token-broken" });
    await connectPage(
      { db, bus, cipher },
      { pageId: "1001", name: "Healthy Shoes", companyId: "acme", token: "token-healthy" },
    );
    await connectPage(
      { db, bus, cipher },
      { pageId: "1002", name: "Broken Bikes", companyId: "acme", token: "token-broken" },
    );
    meta.state.subscribe("1001", fields);
    await db.pageSubscription.create({
      data: {
        pageId: "1001",
        desiredFields: fields,
        subscribedFields: fields,
        status: "subscribed",
        lastCheckedAt: new Date(),
      },
    });
    await db.pageSubscription.create({
      data: {
        pageId: "1002",
        desiredFields: fields,
        subscribedFields: [],
        status: "missing",
        lastCheckedAt: new Date(),
      },
    });
    const { subjects } = bus.topology;
    // Entries parked by the page-router: two for the broken page, one for a page nobody connected.
    for (const pageId of ["1002", "1002", "9009"]) {
      await publishRaw(
        bus.js,
        subjects.unrouted(pageId),
        JSON.stringify({ id: pageId, time: 1, messaging: [] }),
        {
          headers: {
            [Headers.reason]: "page_disabled",
            [Headers.pageId]: pageId,
            [Headers.originalSubject]: subjects.webhookEntry(pageId),
          },
        },
      );
    }
    // A dead letter from the message-service for the healthy page, and a received entry for it.
    await publishRaw(bus.js, subjects.deadLetter("message-service"), "{}", {
      headers: {
        [Headers.reason]: "invalid event",
        [Headers.originalSubject]: subjects.messagingEvent("1001"),
      },
    });
    await publishRaw(
      bus.js,
      subjects.webhookEntry("1001"),
      JSON.stringify({ id: "1001", time: 1, messaging: [] }),
    );
    // A flood's excess waiting in the healthy page's overflow for its fair share.
    for (let i = 0; i < 3; i++) {
      await publishRaw(
        bus.js,
        subjects.pageOverflow("1001"),
        JSON.stringify({ id: "1001", time: i, messaging: [] }),
      );
    }

    const registry = createMetricsRegistry("console");
    registerJetStreamMetrics({ registry, bus, log });
    const graph = createGraphClient({ baseUrl: metaServer.url, version: "v21.0", appSecret: APP_SECRET });
    const auth: OperatorAuth = createOperatorAuth({
      operatorToken: OPERATOR_TOKEN,
      sessionTtlMs: TWELVE_HOURS,
      revocations: createSessionRevocations(db),
    });
    deps = {
      auth,
      overview: { db, bus, cipher, desiredFields: fields },
      subscriptions: { db, bus, cipher, graph, appId: APP_ID, desiredFields: fields, log },
      bus,
      log,
      registry,
      checks: [],
    };
    app = createConsoleApp(deps);
    server = await listen(app, 0, "127.0.0.1");
    cookie = await signIn(app);
  });

  afterAll(async () => {
    server?.close();
    await metaServer?.close();
    await deleteStreams(bus.jsm, bus.topology);
    await bus.drain();
    await db.$disconnect();
    await database.drop();
  });

  it("shows nothing without the operator credential, and compares it exactly", async () => {
    expect((await request(app).get("/").accept("html")).headers.location).toBe("/login");
    expect((await request(app).get("/api/pages")).status).toBe(401);
    expect(
      (await request(app).get("/api/pages").set("Authorization", `Bearer ${OPERATOR_TOKEN}x`)).status,
    ).toBe(401);
    expect((await request(app).get("/api/pages").set("Cookie", `${SESSION_COOKIE}=forged`)).status).toBe(401);
    const wrong = await request(app)
      .post("/login")
      .type("form")
      .send({ token: OPERATOR_TOKEN.slice(0, -1) });
    expect(wrong.status).toBe(401);
    expect(wrong.headers["set-cookie"]).toBeUndefined();
    expect(
      (await request(app).get("/api/pages").set("Authorization", `Bearer ${OPERATOR_TOKEN}`)).status,
    ).toBe(200);
    const basic = Buffer.from(`operator:${OPERATOR_TOKEN}`).toString("base64");
    expect((await request(app).get("/api/pages").set("Authorization", `Basic ${basic}`)).status).toBe(200);
    // The cookie is derived from the token, never the token itself.
    expect(cookie).toMatch(new RegExp(`^${SESSION_COOKIE}=`));
    expect(cookie).not.toContain(OPERATOR_TOKEN);
  });

  it("lists every page with its subscription, token, traffic and waiting entries, problems first", async () => {
    const res = await request(app).get("/api/pages").set("Cookie", cookie);
    const pages = res.body.pages as Array<Record<string, unknown>>;
    expect(pages.map((p) => p.pageId)).toEqual(["1002", "1001", "9009"]);
    expect(pages[0]).toMatchObject({
      name: "Broken Bikes",
      companyId: "acme",
      subscriptionStatus: "missing",
      missingFields: fields,
      tokenStatus: "ok",
      unrouted: 2,
      deadLettered: 0,
      problems: ["subscription missing", "2 unrouted"],
    });
    expect(pages[2]).toMatchObject({ name: null, unrouted: 1, problems: ["not connected", "1 unrouted"] });
    expect(pages[1]).toMatchObject({
      subscriptionStatus: "subscribed",
      deadLettered: 1,
      waitingForShare: 3,
      problems: ["1 dead-lettered", "3 waiting for its fair share"],
    });
    expect(pages[1]!.lastWebhookAt).not.toBeNull();
    expect(pages[0]!.lastWebhookAt).toBeNull();
    const html = await request(app).get("/").set("Cookie", cookie);
    expect(html.text).toContain('data-page-id="1002"');
    expect(html.text).toContain("Broken Bikes");
    expect(html.text).toContain('data-action="sign-out"');
  });

  it("re-subscribes a page through the subscription package, only with the form's CSRF field", async () => {
    const csrf = csrfOf((await request(app).get("/").set("Cookie", cookie)).text);
    const forged = await request(app)
      .post("/pages/1002/resubscribe")
      .set("Cookie", cookie)
      .type("form")
      .send({});
    expect(forged.status).toBe(403);
    expect(meta.state.subscriptions("1002")).toBeUndefined();
    const res = await request(app)
      .post("/pages/1002/resubscribe")
      .set("Cookie", cookie)
      .type("form")
      .send({ csrf });
    expect(res.status).toBe(303);
    expect(res.headers.location).toContain("status=subscribed");
    expect(meta.state.subscriptions("1002")?.sort()).toEqual([...fields].sort());
    const row = await db.pageSubscription.findUniqueOrThrow({ where: { pageId: "1002" } });
    expect(row.status).toBe("subscribed");
  });

  it("asks for the CSRF field whenever a browser could have sent the credential; only a bearer token is exempt", async () => {
    // Resubscribing a page nobody connected changes nothing: 303 means the action ran, 403 that it was refused.
    const post = () => request(app).post("/pages/4040/resubscribe").type("form");
    const basic = `Basic ${Buffer.from(`operator:${OPERATOR_TOKEN}`).toString("base64")}`;
    // A browser sends the cookie (and cached basic credentials) with a cross-site form, whatever else it adds.
    expect((await post().set("Cookie", cookie).set("Authorization", "Bearer bogus").send({})).status).toBe(
      403,
    );
    expect((await post().set("Cookie", cookie).set("Authorization", basic).send({})).status).toBe(403);
    expect(
      (await post().set("Cookie", cookie).set("Authorization", `Bearer ${OPERATOR_TOKEN}`).send({})).status,
    ).toBe(403);
    expect((await post().set("Authorization", basic).send({})).status).toBe(403);
    // The basic-auth operator's page carries the field its forms need.
    const csrf = csrfOf((await request(app).get("/").set("Authorization", basic)).text);
    expect((await post().set("Authorization", basic).send({ csrf })).status).toBe(303);
    // A script with the bearer token and no cookie is no browser.
    expect((await post().set("Authorization", `Bearer ${OPERATOR_TOKEN}`).send({})).status).toBe(303);
  });

  it("replays a page's unrouted entries back to the webhooks stream", async () => {
    const { streams, subjects } = bus.topology;
    const csrf = csrfOf((await request(app).get("/").set("Cookie", cookie)).text);
    const res = await request(app)
      .post("/pages/1002/replay-unrouted")
      .set("Cookie", cookie)
      .type("form")
      .send({ csrf });
    expect(res.headers.location).toContain("replayed=2");
    expect(await listStored(bus.js, bus.jsm, streams.unrouted.name, subjects.unrouted("1002"))).toHaveLength(
      0,
    );
    expect(
      await listStored(bus.js, bus.jsm, streams.webhooks.name, subjects.webhookEntry("1002")),
    ).toHaveLength(2);
    expect(await listStored(bus.js, bus.jsm, streams.unrouted.name, subjects.unrouted("9009"))).toHaveLength(
      1,
    );
  });

  it("lists each company's webhook endpoints with their health, and replays one's deliveries", async () => {
    const cipher = createTokenCipher(generateTokenKey("k1"));
    const policy = { allowPrivateTargets: true };
    const healthy = await createEndpoint({ db, cipher, policy }, "acme", {
      url: "https://hooks.acme.test/a",
    });
    const failing = await createEndpoint({ db, cipher, policy }, "globex", {
      url: "https://hooks.globex.test/",
    });
    await db.webhookEndpoint.update({
      where: { id: failing.id },
      data: { failingSince: new Date(Date.now() - 3 * 3_600_000), consecutiveFailures: 7 },
    });
    const delivery = (endpointId: string, n: number, status: "pending" | "delivered") =>
      db.webhookDelivery.create({
        data: {
          endpointId,
          eventId: `event-${endpointId}-${n}`,
          webhookId: `msg_${n}`,
          eventType: "message.created",
          source: "domain",
          streamSeq: n,
          orderingKey: "conversation:1001:1",
          body: "{}",
          status,
          occurredAt: new Date(),
          ...(status === "delivered" ? { deliveredAt: new Date() } : {}),
        },
      });
    await delivery(failing.id, 1, "pending");
    await delivery(healthy.id, 2, "delivered");
    await delivery(healthy.id, 3, "delivered");

    const page = await request(app).get("/webhooks").set("Cookie", cookie).expect(200);
    const row = (id: string) =>
      new RegExp(`<tr class="(\\w+)" data-endpoint-id="${id}">([\\s\\S]*?)</tr>`).exec(page.text);
    expect(row(healthy.id)?.[1]).toBe("healthy");
    expect(row(failing.id)?.[1]).toBe("problem");
    expect(row(failing.id)?.[2]).toContain("failing (7 in a row)");
    expect(row(failing.id)?.[2]).toMatch(/data-field="pending">1</);
    expect(page.text).not.toContain(healthy.secret);
    const api = await request(app).get("/api/webhooks").set("Cookie", cookie).expect(200);
    expect(api.body.endpoints.map((e: { companyId: string }) => e.companyId).sort()).toEqual([
      "acme",
      "globex",
    ]);

    // Without the form's CSRF field nothing is replayed; with it, the healthy endpoint's two go again.
    const replay = () =>
      request(app).post(`/webhooks/${healthy.id}/replay`).set("Cookie", cookie).type("form");
    expect((await replay().send({ since: "1h" })).status).toBe(403);
    const done = await replay().send({ since: "1h", csrf: csrfOf(page.text) });
    expect(done.status).toBe(303);
    expect(done.headers.location).toContain("replayed=2");
    const again = await db.webhookDelivery.findMany({ where: { endpointId: healthy.id } });
    expect(again.map((d) => d.status)).toEqual(["pending", "pending"]);
    await db.webhookEndpoint.deleteMany({});
  });

  it("ends a session CONSOLE_SESSION_TTL after sign-in: the cookie says so, and the server refuses it after", async () => {
    let clock = Date.now();
    const shortLived = replica({ sessionTtlMs: 3_600_000, now: () => clock });
    const login = await request(shortLived).post("/login").type("form").send({ token: OPERATOR_TOKEN });
    const setCookie = String(login.headers["set-cookie"]?.[0]);
    expect(setCookie).toMatch(/Max-Age=3600(;|$)/);
    expect(setCookie).toMatch(/HttpOnly/);
    const session = setCookie.split(";")[0]!;
    expect((await request(shortLived).get("/api/pages").set("Cookie", session)).status).toBe(200);
    clock += 3_600_000 - 1;
    expect((await request(shortLived).get("/api/pages").set("Cookie", session)).status).toBe(200);
    clock += 1;
    expect((await request(shortLived).get("/api/pages").set("Cookie", session)).status).toBe(401);
    expect((await request(shortLived).get("/").set("Cookie", session).accept("html")).headers.location).toBe(
      "/login",
    );
    // Tampering with the expiry breaks the signature.
    const [name, value] = session.split("=") as [string, string];
    const [id, issued, , signature] = value.split(".");
    const extended = `${name}=${[id, issued, String(clock + 3_600_000), signature].join(".")}`;
    expect((await request(shortLived).get("/api/pages").set("Cookie", extended)).status).toBe(401);
    // A shorter TTL set later applies to sessions issued before it.
    clock = Date.now();
    const issued12h = await signIn(replica({ now: () => clock }));
    clock += 2 * 3_600_000;
    expect(
      (
        await request(replica({ now: () => clock }))
          .get("/api/pages")
          .set("Cookie", issued12h)
      ).status,
    ).toBe(200);
    expect(
      (
        await request(replica({ sessionTtlMs: 3_600_000, now: () => clock }))
          .get("/api/pages")
          .set("Cookie", issued12h)
      ).status,
    ).toBe(401);
  });

  it("signing out revokes the session on every replica, and the old cookie cannot be replayed", async () => {
    const [one, two] = [replica(), replica()];
    const session = await signIn(one);
    expect((await request(two).get("/api/pages").set("Cookie", session)).status).toBe(200);
    const signedOut = await request(one).post("/logout").set("Cookie", session);
    expect(signedOut.status).toBe(303);
    expect(signedOut.headers.location).toBe("/login");
    expect(String(signedOut.headers["set-cookie"]?.[0])).toMatch(new RegExp(`^${SESSION_COOKIE}=;`));
    for (const replicaApp of [one, two]) {
      expect((await request(replicaApp).get("/api/pages").set("Cookie", session)).status).toBe(401);
      expect(
        (await request(replicaApp).get("/").set("Cookie", session).accept("html")).headers.location,
      ).toBe("/login");
    }
    const revoked = await db.consoleSessionRevocation.findMany();
    expect(revoked).toHaveLength(1);
    expect(revoked[0]!.expiresAt.getTime()).toBeGreaterThan(Date.now() + TWELVE_HOURS - 60_000);
    // Other sessions, and signing in again, are not affected.
    expect((await request(two).get("/api/pages").set("Cookie", cookie)).status).toBe(200);
    expect(
      (
        await request(two)
          .get("/api/pages")
          .set("Cookie", await signIn(one))
      ).status,
    ).toBe(200);
  });

  it("exports JetStream's state: dead letters per stage, unrouted per page, consumer lag", async () => {
    const text = (await request(app).get("/metrics")).text;
    expect(text).toMatch(
      /switchboard_jetstream_dead_letters_waiting\{stage="message-service",service="console"\} 1/,
    );
    expect(text).toMatch(/switchboard_jetstream_unrouted_waiting\{page_id="9009",service="console"\} 1/);
    expect(text).toMatch(
      new RegExp(`switchboard_jetstream_stream_messages\\{stream="${bus.topology.streams.webhooks.name}"`),
    );
    expect(text).toContain("# TYPE switchboard_jetstream_consumer_pending gauge");
  });

  it("exports each stream's bytes and, for the bounded unrouted and dead-letter streams, their byte limit, by stream key", async () => {
    const { streams } = bus.topology;
    const [unrouted, deadLetter] = await Promise.all([
      bus.jsm.streams.info(streams.unrouted.name),
      bus.jsm.streams.info(streams.deadLetter.name),
    ]);
    expect(unrouted.state.bytes).toBeGreaterThan(0);
    const text = (await request(app).get("/metrics")).text;
    const value = (name: string, stream: string) =>
      new RegExp(`^${name}\\{stream="${stream}",service="console"\\} (\\S+)$`, "m").exec(text)?.[1];
    expect(value("switchboard_stream_bytes", "unrouted")).toBe(String(unrouted.state.bytes));
    expect(value("switchboard_stream_bytes", "deadLetter")).toBe(String(deadLetter.state.bytes));
    expect(value("switchboard_stream_max_bytes", "unrouted")).toBe(String(1024 ** 3));
    expect(value("switchboard_stream_max_bytes", "deadLetter")).toBe(String(1024 ** 3));
    // Streams bounded by age only have no byte limit to approach.
    expect(value("switchboard_stream_bytes", "webhooks")).toBeDefined();
    expect(value("switchboard_stream_max_bytes", "webhooks")).toBeUndefined();
    // The stream key, never a namespaced name or a page: one series per stream.
    expect(text).not.toMatch(/switchboard_stream_(max_)?bytes\{stream="[^"]*_/);
  });

  it("stops answering sign-ins from a client after ten failures, even with the right token", async () => {
    const fresh = replica();
    const statuses: number[] = [];
    for (let i = 0; i < 11; i++) {
      const res = await request(fresh)
        .post("/login")
        .type("form")
        .send({ token: `guess-${i}` });
      statuses.push(res.status);
    }
    expect(statuses).toEqual([...Array(10).fill(401), 429]);
    const blocked = await request(fresh).post("/login").type("form").send({ token: OPERATOR_TOKEN });
    expect(blocked.status).toBe(429);
    expect(blocked.headers["set-cookie"]).toBeUndefined();
  });

  it("counts failed bearer tokens: ten of them, and the eleventh request is refused unchecked", async () => {
    const fresh = replica();
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) {
      statuses.push(
        (await request(fresh).get("/api/pages").set("Authorization", `Bearer guess-${i}`)).status,
      );
    }
    expect(statuses).toEqual(Array(10).fill(401));
    expect((await request(fresh).get("/api/pages").set("Authorization", "Bearer guess-10")).status).toBe(429);
    expect(
      (await request(fresh).get("/api/pages").set("Authorization", `Bearer ${OPERATOR_TOKEN}`)).status,
    ).toBe(429);
  });

  it("counts failures on every path together — form, basic, bearer, a forged cookie — but lets a live session in", async () => {
    const fresh = replica();
    const session = await signIn(fresh);
    const basic = (password: string) => `Basic ${Buffer.from(`operator:${password}`).toString("base64")}`;
    const attempts = [
      ...[0, 1, 2].map((i) =>
        request(fresh)
          .post("/login")
          .type("form")
          .send({ token: `guess-${i}` }),
      ),
      ...[0, 1, 2].map((i) =>
        request(fresh)
          .get("/api/pages")
          .set("Authorization", basic(`guess-${i}`)),
      ),
      ...[0, 1, 2].map((i) => request(fresh).get("/api/pages").set("Authorization", `Bearer guess-${i}`)),
      request(fresh)
        .get("/api/pages")
        .set("Cookie", `${SESSION_COOKIE}=${"a".repeat(24)}.1.9999999999999.forged`),
    ];
    const statuses: number[] = [];
    for (const attempt of attempts) statuses.push((await attempt).status);
    expect(statuses).toEqual(Array(10).fill(401));
    expect((await request(fresh).get("/api/pages").set("Authorization", basic(OPERATOR_TOKEN))).status).toBe(
      429,
    );
    expect((await request(fresh).get("/api/pages").set("Cookie", `${SESSION_COOKIE}=forged`)).status).toBe(
      429,
    );
    expect((await request(fresh).post("/login").type("form").send({ token: OPERATOR_TOKEN })).status).toBe(
      429,
    );
    // Someone else's guesses from the same address do not lock out an operator already signed in.
    expect((await request(fresh).get("/api/pages").set("Cookie", session)).status).toBe(200);
    // Asking without any credential is no guess: a browser is still sent to the sign-in form.
    expect((await request(fresh).get("/").accept("html")).headers.location).toBe("/login");
  });

  it("keys the throttle on the client address Express sees: behind CONSOLE_TRUST_PROXY, per forwarded client", async () => {
    const guessFrom = async (target: ReturnType<typeof replica>, client: string) => {
      const statuses: number[] = [];
      for (let i = 0; i < 11; i++) {
        const res = await request(target)
          .get("/api/pages")
          .set("X-Forwarded-For", client)
          .set("Authorization", `Bearer guess-${i}`);
        statuses.push(res.status);
      }
      return statuses;
    };
    const behindProxy = replica({}, { trustProxy: 1 });
    expect(await guessFrom(behindProxy, "203.0.113.7")).toEqual([...Array(10).fill(401), 429]);
    const other = await request(behindProxy)
      .get("/api/pages")
      .set("X-Forwarded-For", "203.0.113.8")
      .set("Authorization", `Bearer ${OPERATOR_TOKEN}`);
    expect(other.status).toBe(200);
    expect((await guessFrom(behindProxy, "203.0.113.8")).at(-1)).toBe(429);
    // Off (the default), X-Forwarded-For is the client's own word: every client is the proxy's address.
    const direct = replica();
    expect(await guessFrom(direct, "203.0.113.7")).toEqual([...Array(10).fill(401), 429]);
    const spoofed = await request(direct)
      .get("/api/pages")
      .set("X-Forwarded-For", "203.0.113.9")
      .set("Authorization", `Bearer ${OPERATOR_TOKEN}`);
    expect(spoofed.status).toBe(429);
  });

  it("pages the overview, problems first across pages, with NATS requests that grow with the page size, not the pages", async () => {
    const cipher = deps.overview.cipher;
    await db.pageConnection.createMany({
      data: Array.from({ length: 300 }, (_, i) => {
        const pageId = String(5_000_000 + i);
        return {
          pageId,
          name: `Shop ${i}`,
          companyId: "bulk",
          pageAccessTokenEnc: cipher.encrypt(`token-${i}`, { context: `page:${pageId}` }),
        };
      }),
    });
    const requests = { getMessage: 0, info: 0 };
    const streams = bus.jsm.streams;
    const getMessage = streams.getMessage.bind(streams);
    const info = streams.info.bind(streams);
    streams.getMessage = ((...args: Parameters<typeof getMessage>) => {
      requests.getMessage++;
      return getMessage(...args);
    }) as typeof getMessage;
    streams.info = ((...args: Parameters<typeof info>) => {
      requests.info++;
      return info(...args);
    }) as typeof info;
    try {
      const list = async (query: string) => {
        Object.assign(requests, { getMessage: 0, info: 0 });
        const res = await request(app).get(`/api/pages?${query}`).set("Cookie", cookie).expect(200);
        return {
          body: res.body as {
            pages: Array<{ pageId: string; problems: string[] }>;
            total: number;
            withProblems: number;
            next: number | null;
          },
          ...requests,
        };
      };
      const first = await list("limit=20");
      expect(first.body.pages).toHaveLength(20);
      expect(first.body.total).toBe(303);
      expect(first.body.next).toBe(20);
      // The pages in trouble come first, whichever screen they would have been on alphabetically.
      expect(first.body.pages[0]?.problems.length).toBeGreaterThan(0);
      expect(first.body.withProblems).toBeGreaterThanOrEqual(2);
      expect(first.getMessage).toBe(20);
      const fixed = first.info;

      const wider = await list("offset=20&limit=40");
      expect(wider.body.pages).toHaveLength(40);
      expect(wider.getMessage).toBe(40);
      expect(wider.info).toBe(fixed);
      expect(wider.body.pages.map((p) => p.pageId)).not.toContain(first.body.pages[0]?.pageId);

      const last = await list("offset=300&limit=20");
      expect(last.body.pages).toHaveLength(3);
      expect(last.body.next).toBeNull();

      const html = await request(app).get("/?offset=50").set("Cookie", cookie).expect(200);
      expect(html.text).toContain("page 2 of 7");
      expect(html.text).toContain('href="/?offset=100"');
      // An action's notice names its page with `page=`: it never moves the screen.
      const notice = await request(app)
        .get("/?action=resubscribe&page=1002&status=subscribed")
        .set("Cookie", cookie)
        .expect(200);
      expect(notice.text).toContain("page 1 of 7");
    } finally {
      streams.getMessage = getMessage;
      streams.info = info;
      await db.pageConnection.deleteMany({ where: { companyId: "bulk" } });
    }
  });

  it("shows a page's conversations with their platform and thread owner, and a conversation's edited, unsent, unsupported and standby messages", async () => {
    meta.state.addPage({ pageId: "17841400000000077", token: "token-ig" });
    await connectPage(
      { db, bus, cipher: createTokenCipher(generateTokenKey("k1")) },
      {
        pageId: "17841400000000077",
        name: "Shoes on Instagram",
        companyId: "acme",
        token: "token-ig",
        platform: "instagram",
      },
    );
    const page = "17841400000000077";
    const contact = await db.contact.create({
      data: { pageId: page, psid: "5310000000000077", name: "Grace H.", username: "grace" },
    });
    const at = new Date("2026-12-04T03:00:00.000Z");
    const conversation = await db.conversation.create({
      data: {
        pageId: page,
        contactId: contact.id,
        platform: "instagram",
        lastMessageAt: new Date(at.getTime() + 3000),
        threadOwnerAppId: "1217981644879628",
        threadOwnerChangedAt: at,
      },
    });
    const message = (mid: string, offset: number, data: Record<string, unknown>) => ({
      pageId: page,
      conversationId: conversation.id,
      platform: "instagram" as const,
      mid,
      direction: "incoming" as const,
      kind: "text",
      status: "received" as const,
      sentAt: new Date(at.getTime() + offset),
      ...data,
    });
    await db.message.createMany({
      data: [
        message("ig_edited", 0, { text: "four pairs", editCount: 2, editedAt: at }),
        message("ig_unsent", 1000, { text: null, deletedAt: at }),
        message("ig_unsupported", 2000, { text: null, payload: { unsupported: true } }),
        message("ig_standby", 3000, {
          text: "hello inbox",
          receivedOnStandby: true,
          payload: { replyToStory: { id: "1790", url: null } },
        }),
      ],
    });

    const overview = await request(app).get("/").set("Cookie", cookie).expect(200);
    expect(overview.text).toContain(`href="/pages/${page}/conversations"`);

    const list = await request(app).get(`/pages/${page}/conversations`).set("Cookie", cookie).expect(200);
    const row = new RegExp(`<tr data-conversation-id="${conversation.id}">[\\s\\S]*?</tr>`).exec(
      list.text,
    )?.[0];
    expect(row).toContain("@grace (Grace H.)");
    expect(row).toContain('data-field="platform">Instagram');
    expect(row).toContain('data-field="thread-owner">Instagram inbox');
    expect(row).toContain("hello inbox");
    expect(row).toContain('data-marker="standby"');

    const thread = await request(app)
      .get(`/conversations/${conversation.id}`)
      .set("Cookie", cookie)
      .expect(200);
    const rowOf = (mid: string) =>
      new RegExp(`<tr data-message-id="[^"]+" data-mid="${mid}">[\\s\\S]*?</tr>`).exec(thread.text)?.[0] ??
      "";
    expect(rowOf("ig_edited")).toContain("four pairs");
    expect(rowOf("ig_edited")).toContain("edited ×2");
    expect(rowOf("ig_unsent")).toContain("unsent by the customer");
    expect(rowOf("ig_unsent")).toContain('data-marker="unsent"');
    expect(rowOf("ig_unsupported")).toContain('data-marker="unsupported"');
    expect(rowOf("ig_standby")).toContain('data-marker="story-reply"');
    expect(rowOf("ig_edited")).not.toContain('data-marker="unsent"');
    expect(thread.text.indexOf("ig_edited")).toBeLessThan(thread.text.indexOf("ig_standby"));

    const json = await request(app)
      .get(`/api/conversations/${conversation.id}`)
      .set("Cookie", cookie)
      .expect(200);
    expect(json.body.conversation).toMatchObject({
      platform: "instagram",
      threadOwner: { appId: "1217981644879628" },
    });
    expect(
      json.body.data.map((m: { mid: string; editCount: number; deletedAt: string | null }) => [
        m.mid,
        m.editCount,
        m.deletedAt !== null,
      ]),
    ).toEqual([
      ["ig_edited", 2, false],
      ["ig_unsent", 0, true],
      ["ig_unsupported", 0, false],
      ["ig_standby", 0, false],
    ]);

    await request(app).get("/pages/424242/conversations").set("Cookie", cookie).expect(404);
    await request(app).get("/conversations/not-a-uuid").set("Cookie", cookie).expect(404);
    await request(app).get(`/pages/${page}/conversations?cursor=nonsense`).set("Cookie", cookie).expect(400);
    // Behind sign-in like every screen.
    await request(app).get(`/api/conversations/${conversation.id}`).expect(401);
  });
});

describe("sign-in throttle", () => {
  it("forgets a client's failures when the window ends", () => {
    const throttle = createSignInThrottle({ limit: 2, windowMs: 1000 });
    throttle.failed("a", 0);
    throttle.failed("a", 10);
    expect(throttle.blocked("a", 20)).toBe(true);
    expect(throttle.blocked("b", 20)).toBe(false);
    expect(throttle.blocked("a", 1001)).toBe(false);
  });
});
