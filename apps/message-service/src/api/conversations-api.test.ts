import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { conversationKey, type DomainEvent, type MessagingEvent, newApiKey } from "@switchboard/contracts";
import { createTokenCipher, generateTokenKey } from "@switchboard/crypto";
import { createFakeMeta, type FakeMeta, type RunningFakeMeta } from "@switchboard/fake-meta";
import { createGraphClients } from "@switchboard/graph-api";
import { createMetricsRegistry } from "@switchboard/observability";
import { connectPage } from "@switchboard/pages";
import { eventually, uniqueId } from "@switchboard/testing";
import express, { type Express } from "express";
import request, { type Response } from "supertest";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startSendWorker } from "../send/send-worker";
import { createTestWorld, log, type ServiceInstance, type TestWorld } from "../test-support";
import { createConversationsApi } from "./router";

interface EchoItem {
  recipient: { id: string };
  timestamp: number;
  message: { mid: string; text?: string; app_id: number | string; metadata?: string };
}

const SEND_RATE = 4;
const APP_SECRET = "conversations-api-test-secret";
const APP_ID = "100000000000001";
const cipher = createTokenCipher(generateTokenKey("k1"));

// Two pages of company A, one of company B; one person writing to each page.
const pages = {
  a1: { pageId: "7100000000000001", companyId: "company-a", token: "EAA-token-a1", psid: "8100000000000001" },
  a2: { pageId: "7100000000000002", companyId: "company-a", token: "EAA-token-a2", psid: "8100000000000002" },
  b1: { pageId: "7200000000000001", companyId: "company-b", token: "EAA-token-b1", psid: "8200000000000001" },
};

describe("Conversations API and send worker", () => {
  let world: TestWorld;
  let meta: FakeMeta;
  let metaServer: RunningFakeMeta;
  let echoReceiver: Server;
  let app: Express;
  let stopWorker: () => Promise<void>;
  let instance: ServiceInstance;
  const keys = { a: "", b: "" };

  beforeAll(async () => {
    world = await createTestWorld();
    instance = await world.startInstance({ lockRetryDelayMs: 200 });

    // Stands in for ingress + page-router: Meta's echo webhook becomes the typed event they publish.
    const receiver = express().use(express.json());
    receiver.post("/webhooks/facebook", async (req, res) => {
      for (const entry of req.body.entry) {
        for (const item of entry.messaging) await world.publish(echoEvent(String(entry.id), item));
      }
      res.sendStatus(200);
    });
    echoReceiver = await new Promise<Server>((resolve) => {
      const server = receiver.listen(0, "127.0.0.1", () => resolve(server));
    });
    meta = createFakeMeta({
      appSecret: APP_SECRET,
      appId: APP_ID,
      ingressUrl: `http://127.0.0.1:${(echoReceiver.address() as AddressInfo).port}/webhooks/facebook`,
      echoMode: "after",
    });
    metaServer = await meta.listen(0, "127.0.0.1");

    for (const page of Object.values(pages)) {
      meta.state.addPage({ pageId: page.pageId, token: page.token });
      meta.state.addUser({ pageId: page.pageId, psid: page.psid });
      await connectPage({ db: world.db, bus: world.bus, cipher }, { ...page, name: `Page ${page.pageId}` });
    }
    for (const company of ["a", "b"] as const) {
      const { key, keyHash, prefix } = newApiKey();
      await world.db.apiKey.create({ data: { companyId: `company-${company}`, keyHash, prefix } });
      keys[company] = key;
    }

    const worker = await startSendWorker({
      bus: instance.bus,
      db: world.db,
      lock: instance.lock,
      graphs: createGraphClients(
        {
          messenger: { baseUrl: metaServer.url, version: "v21.0", appSecret: APP_SECRET },
          instagram: { baseUrl: metaServer.instagramUrl, version: "v21.0", appSecret: APP_SECRET },
        },
        { maxRetries: 0, timeoutMs: 1000 },
      ),
      graphTimeoutMs: 1000,
      cipher,
      redis: instance.redis[0]!,
      redisKeyPrefix: world.keyPrefix,
      log,
      registry: instance.registry,
      echoWaitMs: 200,
      maxAttempts: 10,
      ratePerPagePerSecond: SEND_RATE,
    });
    stopWorker = worker.stop;
    app = express().use(
      createConversationsApi({
        db: world.db,
        bus: world.bus,
        log,
        metrics: createMetricsRegistry("api-test"),
        webhooks: { cipher, policy: { allowPrivateTargets: false } },
      }),
    );
  });

  afterAll(async () => {
    await stopWorker?.();
    await metaServer?.close();
    await new Promise((resolve) => echoReceiver?.close(resolve));
    await world?.close();
  });

  beforeEach(() => {
    meta.state.echoMode = "after";
  });

  const send = (
    page: (typeof pages)[keyof typeof pages],
    body: object,
    key = keys.a,
    idempotencyKey?: string,
  ) => {
    const req = request(app)
      .post(`/v1/pages/${page.pageId}/conversations/${page.psid}/messages`)
      .set("Authorization", `Bearer ${key}`);
    if (idempotencyKey) req.set("Idempotency-Key", idempotencyKey);
    return req.send(body);
  };
  const ackedEchoes = async () => {
    const metric = await instance.registry.getSingleMetric("switchboard_messaging_events_total")?.get();
    return metric?.values.find((v) => v.labels.kind === "echo" && v.labels.outcome === "acked")?.value ?? 0;
  };
  const messageRow = (id: string) => world.db.message.findUniqueOrThrow({ where: { id } });
  const settledRow = (id: string) =>
    eventually(
      async () => {
        const row = await messageRow(id);
        return row.status !== "sending" && row;
      },
      { message: `message ${id} settled` },
    );
  const sendCallsWithMetadata = (id: string) =>
    meta.state.calls.filter(
      (c) =>
        c.endpoint === "messages" && (c.body as { message?: { metadata?: string } }).message?.metadata === id,
    );

  it("sends each message through its own page with that page's token and appsecret_proof", async () => {
    const sent: Record<string, string> = {};
    for (const [name, page] of Object.entries(pages)) {
      const response = await send(page, { text: `hello from ${name}` }, name === "b1" ? keys.b : keys.a);
      expect(response.status).toBe(202);
      expect(response.body.status).toBe("sending");
      sent[name] = response.body.id;
    }
    for (const [name, page] of Object.entries(pages)) {
      const row = await settledRow(sent[name]!);
      expect(row.status).toBe("sent");
      const calls = sendCallsWithMetadata(row.id);
      expect(calls).toHaveLength(1);
      expect(calls[0]).toMatchObject({ pageId: page.pageId, token: page.token, appsecretProofValid: true });
      const delivered = meta.state.sentMessages.find((m) => m.mid === row.mid);
      expect(delivered).toMatchObject({ pageId: page.pageId, psid: page.psid });
    }
    await eventually(async () => {
      const events = await world.domainEvents();
      return Object.values(sent).every((id) =>
        events.some((e) => e.type === "message.sent" && e.messageId === id),
      );
    });
  });

  it("answers 404 to another company's key on every route of a page, and 401 without a valid key", async () => {
    const { a1 } = pages;
    const routes = [
      request(app).get(`/v1/pages/${a1.pageId}/conversations`),
      request(app).get(`/v1/pages/${a1.pageId}/conversations/${a1.psid}/messages`),
      request(app)
        .post(`/v1/pages/${a1.pageId}/conversations/${a1.psid}/messages`)
        .send({ text: "intrusion" }),
    ];
    const callsBefore = meta.state.calls.length;
    const rowsBefore = await world.db.message.count();
    for (const route of routes) {
      const response = await route.set("Authorization", `Bearer ${keys.b}`);
      expect(response.status).toBe(404);
      expect(response.body.error.code).toBe("not_found");
    }
    // A page that does not exist gets the very same answer.
    const unknown = await request(app)
      .get("/v1/pages/7999999999999999/conversations")
      .set("Authorization", `Bearer ${keys.b}`);
    expect(unknown.status).toBe(404);
    expect(unknown.body).toEqual((await routes[0]!.set("Authorization", `Bearer ${keys.b}`)).body);

    const listB = await request(app).get("/v1/pages").set("Authorization", `Bearer ${keys.b}`);
    expect(listB.body.data.map((p: { pageId: string }) => p.pageId)).toEqual([pages.b1.pageId]);
    const listA = await request(app).get("/v1/pages").set("Authorization", `Bearer ${keys.a}`);
    expect(listA.body.data.map((p: { pageId: string }) => p.pageId).sort()).toEqual(
      [pages.a1.pageId, pages.a2.pageId].sort(),
    );

    expect((await request(app).get("/v1/pages")).status).toBe(401);
    expect((await request(app).get("/v1/pages").set("Authorization", "Bearer sbk_not-a-key")).status).toBe(
      401,
    );
    const revoked = newApiKey();
    await world.db.apiKey.create({
      data: {
        companyId: "company-a",
        keyHash: revoked.keyHash,
        prefix: revoked.prefix,
        revokedAt: new Date(),
      },
    });
    expect((await send(a1, { text: "x" }, revoked.key)).status).toBe(401);

    expect(await world.db.message.count()).toBe(rowsBefore);
    expect(meta.state.calls.length).toBe(callsBefore);
  });

  it("sends once for the same Idempotency-Key, sequential or racing", async () => {
    const key = uniqueId("idem");
    const first = await send(pages.a1, { text: "only once" }, keys.a, key);
    const again = await send(pages.a1, { text: "only once" }, keys.a, key);
    expect(first.status).toBe(202);
    expect(again.status).toBe(202);
    expect(again.headers["idempotent-replayed"]).toBe("true");
    expect(again.body.id).toBe(first.body.id);

    const racingKey = uniqueId("race");
    const racing = await Promise.all(
      Array.from({ length: 6 }, () => send(pages.a2, { text: "racing" }, keys.a, racingKey)),
    );
    expect(racing.map((r) => r.status)).toEqual(Array(6).fill(202));
    expect(new Set(racing.map((r) => r.body.id)).size).toBe(1);

    for (const id of [first.body.id, racing[0]!.body.id]) {
      expect((await settledRow(id)).status).toBe("sent");
      expect(sendCallsWithMetadata(id)).toHaveLength(1);
    }
    expect(await world.db.message.count({ where: { idempotencyKey: { in: [key, racingKey] } } })).toBe(2);

    const reused = await request(app)
      .post(`/v1/pages/${pages.a1.pageId}/conversations/8100000000000999/messages`)
      .set("Authorization", `Bearer ${keys.a}`)
      .set("Idempotency-Key", key)
      .send({ text: "someone else" });
    expect(reused.status).toBe(422);
  });

  it.each(["before", "after"] as const)(
    "keeps one row when Meta's echo comes %s the send response",
    async (mode) => {
      meta.state.echoMode = mode;
      const echoesBefore = await ackedEchoes();
      const response = await send(pages.a1, { text: `echo ${mode}` });
      const row = await settledRow(response.body.id);
      await eventually(() => meta.state.webhookDeliveries.some((d) => d.body.includes(row.mid!)));
      await world.settled();

      const rows = await world.db.message.findMany({
        where: { pageId: pages.a1.pageId, text: `echo ${mode}` },
      });
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ id: row.id, mid: row.mid, status: "sent", direction: "outgoing" });
      // The echo was handled (stored nowhere else, not dead-lettered) and named this row in its metadata.
      const delivery = meta.state.webhookDeliveries.find((d) => d.body.includes(row.mid!))!;
      expect((JSON.parse(delivery.body).entry[0].messaging[0] as EchoItem).message.metadata).toBe(row.id);
      await eventually(async () => (await ackedEchoes()) > echoesBefore, { message: "echo acked" });
      expect(await world.deadLetters()).toHaveLength(0);
    },
  );

  it("marks a send outside the 24-hour window failed with a readable reason", async () => {
    meta.state.injectError(pages.a2.pageId, { code: 10, subcode: 2018278, endpoint: "messages", times: 1 });
    const response = await send(pages.a2, { text: "too late" });
    const row = await settledRow(response.body.id);
    expect(row.status).toBe("failed");
    expect(row.error).toMatch(/outside the 24-hour messaging window/);
    expect(row.error).toMatch(/MESSAGE_TAG/);

    const messages = await request(app)
      .get(`/v1/pages/${pages.a2.pageId}/conversations/${pages.a2.psid}/messages?order=desc&limit=1`)
      .set("Authorization", `Bearer ${keys.a}`);
    expect(messages.body.data[0]).toMatchObject({ id: row.id, status: "failed", error: row.error });
    await eventually(async () =>
      (await world.domainEvents()).some(
        (e: DomainEvent) => e.type === "message.failed" && e.messageId === row.id && /24-hour/.test(e.reason),
      ),
    );
  });

  it("retries a transient failure and sends once it passes", async () => {
    meta.state.injectError(pages.a1.pageId, { status: 503, endpoint: "messages", times: 1 });
    const response = await send(pages.a1, { text: "after a hiccup" });
    const row = await settledRow(response.body.id);
    expect(row.status).toBe("sent");
    expect(sendCallsWithMetadata(row.id)).toHaveLength(2);
  });

  it("fails the send and flags the page for re-authorisation when its token was revoked", async () => {
    const page = {
      pageId: "7100000000000003",
      companyId: "company-a",
      token: "EAA-token-a3",
      psid: "8100000000000003",
    };
    meta.state.addPage({ pageId: page.pageId, token: page.token });
    meta.state.addUser({ pageId: page.pageId, psid: page.psid });
    await connectPage({ db: world.db, bus: world.bus, cipher }, { ...page, name: "Revoked page" });
    meta.state.revokeToken(page.pageId);

    const row = await settledRow((await send(page, { text: "anyone there?" })).body.id);
    expect(row.status).toBe("failed");
    expect(row.error).toMatch(/re-authorisation/);
    const connection = await world.db.pageConnection.findUniqueOrThrow({ where: { pageId: page.pageId } });
    expect(connection.status).toBe("reauthorization_required");
    // The page no longer takes sends until it is reconnected.
    expect((await send(page, { text: "again" })).status).toBe(409);
  });

  it("holds the per-page send rate: a burst waits (its schedule, or the person's earlier sends) and every message still goes out once", async () => {
    // One person's burst is also held to queue order, so it may wait behind its own earlier sends rather
    // than for the page's schedule: either way it waits, and the calls stay within the page's rate.
    const waited = async () => {
      const total = async (name: string) =>
        ((await instance.registry.getSingleMetric(name)?.get())?.values ?? []).reduce(
          (sum, v) => sum + v.value,
          0,
        );
      return (
        (await total("switchboard_send_throttled_total")) + (await total("switchboard_send_waits_total"))
      );
    };
    const throttledBefore = await waited();
    const throttled = waited;
    const burst = await Promise.all(
      Array.from({ length: SEND_RATE * 2 + 1 }, (_, i) => send(pages.a2, { text: `burst ${i}` })),
    );
    for (const response of burst) {
      expect((await settledRow(response.body.id)).status).toBe("sent");
      expect(sendCallsWithMetadata(response.body.id)).toHaveLength(1);
    }
    expect(await throttled()).toBeGreaterThan(throttledBefore);
    // Never more than the rate (plus its burst of one) within any second.
    const times = burst
      .flatMap((r) => sendCallsWithMetadata(r.body.id).map((c) => c.at))
      .sort((a, b) => a - b);
    for (let i = SEND_RATE + 1; i < times.length; i++) {
      expect(times[i]! - times[i - SEND_RATE - 1]!).toBeGreaterThanOrEqual(900);
    }
  });

  it("rejects an invalid message body with the reason per field", async () => {
    const both = await send(pages.a1, {
      text: "x",
      attachment: { type: "image", url: "https://x.test/a.png" },
    });
    expect(both.status).toBe(400);
    expect(both.body.error.issues[0].message).toMatch(/either text or attachment/);
    const tagless = await send(pages.a1, { text: "x", messaging_type: "MESSAGE_TAG" });
    expect(tagless.status).toBe(400);
    expect(tagless.body.error.issues.map((i: { path: string }) => i.path)).toContain("tag");
  });

  it("pages through messages and conversations without duplicates or gaps while rows are inserted", async () => {
    const page = pages.b1;
    const contact = await world.db.contact.upsert({
      where: { pageId_psid: { pageId: page.pageId, psid: page.psid } },
      create: { pageId: page.pageId, psid: page.psid },
      update: {},
    });
    const conversation = await world.db.conversation.upsert({
      where: { pageId_contactId: { pageId: page.pageId, contactId: contact.id } },
      create: { pageId: page.pageId, contactId: contact.id },
      update: {},
    });
    const base = Date.UTC(2026, 0, 1);
    const insertMessages = (prefix: string, count: number, offset: number) =>
      world.db.message.createMany({
        data: Array.from({ length: count }, (_, i) => ({
          pageId: page.pageId,
          conversationId: conversation.id,
          // Pairs share a timestamp: the mid breaks the tie.
          mid: `${prefix}-${String(i).padStart(3, "0")}`,
          direction: "incoming" as const,
          kind: "text",
          text: `${prefix} ${i}`,
          status: "received" as const,
          sentAt: new Date(base + offset + Math.floor(i / 2) * 1000),
        })),
      });
    await insertMessages("seed", 60, 0);
    const seeded = await world.db.message.findMany({
      where: { conversationId: conversation.id, mid: { startsWith: "seed-" } },
      select: { id: true },
    });

    const walk = async (path: string, limit: number, onPage: (n: number) => Promise<unknown>) => {
      const seen: Array<Record<string, string>> = [];
      let cursor: string | null = null;
      for (let n = 0; ; n++) {
        const response: Response = await request(app)
          .get(path)
          .query({ limit, ...(cursor ? { cursor } : {}) })
          .set("Authorization", `Bearer ${keys.b}`);
        expect(response.status).toBe(200);
        seen.push(...response.body.data);
        cursor = response.body.nextCursor;
        if (!cursor) return seen;
        await onPage(n);
      }
    };

    // While paging, other messages land before, between and after the pages already read.
    const messages = await walk(`/v1/pages/${page.pageId}/conversations/${page.psid}/messages`, 7, (n) =>
      Promise.all([
        insertMessages(`early${n}`, 2, -60_000),
        insertMessages(`mid${n}`, 2, 15_500),
        insertMessages(`late${n}`, 2, 3_600_000),
      ]),
    );
    const ids = messages.map((m) => m.id!);
    expect(new Set(ids).size).toBe(ids.length);
    for (const { id } of seeded) expect(ids).toContain(id);
    const keysInOrder = messages.map((m) => `${m.sentAt}|${m.mid}`);
    expect(keysInOrder).toEqual([...keysInOrder].sort());

    // Conversations: newest first, stable while new conversations arrive.
    const now = Date.now();
    for (let i = 0; i < 25; i++) {
      const c = await world.db.contact.create({
        data: { pageId: page.pageId, psid: `9${String(i).padStart(15, "0")}` },
      });
      await world.db.conversation.create({
        data: { pageId: page.pageId, contactId: c.id, lastMessageAt: new Date(now - (i % 5) * 60_000) },
      });
    }
    const before = await world.db.conversation.findMany({
      where: { pageId: page.pageId },
      select: { id: true },
    });
    let extra = 0;
    const conversations = await walk(`/v1/pages/${page.pageId}/conversations`, 4, async () => {
      const c = await world.db.contact.create({
        data: { pageId: page.pageId, psid: `5${String(extra++).padStart(15, "0")}` },
      });
      await world.db.conversation.create({
        data: { pageId: page.pageId, contactId: c.id, lastMessageAt: new Date(now - 2 * 60_000) },
      });
    });
    const conversationIds = conversations.map((c) => c.id!);
    expect(new Set(conversationIds).size).toBe(conversationIds.length);
    for (const { id } of before) expect(conversationIds).toContain(id);
    const times = conversations.map((c) => c.lastMessageAt ?? "");
    expect(times).toEqual([...times].sort().reverse());
  });

  it("serves an OpenAPI document generated from the schemas", async () => {
    const response = await request(app).get("/v1/openapi.json");
    expect(response.status).toBe(200);
    expect(Object.keys(response.body.paths)).toEqual(
      expect.arrayContaining(["/v1/pages", "/v1/pages/{pageId}/conversations/{psid}/messages"]),
    );
    expect(response.body.components.schemas.SendMessageRequest.properties.messaging_type).toBeDefined();
  });

  /** What the page-router publishes for an echo item (sender = page, recipient = person). */
  function echoEvent(pageId: string, item: EchoItem): MessagingEvent {
    const psid = String(item.recipient.id);
    return {
      kind: "echo",
      eventId: `echo:${item.message.mid}`,
      pageId,
      platform: "messenger",
      standby: false,
      companyId: Object.values(pages).find((p) => p.pageId === pageId)?.companyId ?? "company-a",
      psid,
      conversationKey: conversationKey(pageId, psid),
      timestamp: item.timestamp,
      traceId: uniqueId("trace"),
      receivedAt: Date.now(),
      raw: item,
      mid: item.message.mid,
      text: item.message.text ?? null,
      attachments: [],
      appId: String(item.message.app_id),
      metadata: item.message.metadata ?? null,
    };
  }
});
