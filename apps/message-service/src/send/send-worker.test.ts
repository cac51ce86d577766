import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { conversationKey, type MessagingEvent } from "@switchboard/contracts";
import { createTokenCipher, generateTokenKey } from "@switchboard/crypto";
import type { Db } from "@switchboard/db";
import { createFakeMeta, type FakeMeta, type RunningFakeMeta } from "@switchboard/fake-meta";
import { createGraphClients } from "@switchboard/graph-api";
import { connectPage } from "@switchboard/pages";
import { queueSend } from "@switchboard/send-queue";
import { eventually, uniqueId } from "@switchboard/testing";
import express from "express";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createTestWorld, events, log, type ServiceInstance, type TestWorld } from "../test-support";
import { startSendSweeper } from "./send-sweeper";
import { startSendWorker } from "./send-worker";

const APP_SECRET = "send-worker-test-secret";
const APP_ID = "100000000000001";
const PAGE = { pageId: "7400000000000001", companyId: "company-s", token: "EAA-send-worker" };
const PEOPLE = Array.from({ length: 10 }, (_, i) => `84000000000000${String(i).padStart(2, "0")}`);
const RATE = 40;
const cipher = createTokenCipher(generateTokenKey("k1"));

/** An Instagram professional account of the same company: its calls go to the fake's Instagram API. */
const IG = { pageId: "17841400000007001", companyId: "company-s", token: "IGAA-send-worker" };
const IG_PEOPLE = ["6100000000000001", "6100000000000002", "6100000000000003"];

interface EchoItem {
  recipient: { id: string };
  timestamp: number;
  message: { mid: string; text?: string; app_id?: number | string; metadata?: string };
}

/**
 * The send worker's guarantees with a real fake Meta, Postgres, Redis and NATS: each message reaches the
 * Send API once, even when Meta's answer is lost or our commit fails after it; throttling and waiting
 * never spend attempts; sends to one person leave in the order they were queued; the lock is not held
 * across the Graph call.
 */
describe("send worker: exactly once, in order, never throttled into failure", () => {
  let world: TestWorld;
  let instance: ServiceInstance;
  let meta: FakeMeta;
  let metaServer: RunningFakeMeta;
  let echoReceiver: Server;
  let workerDb: Db;
  /** When set, the next `$transaction` of the worker fails as a dropped connection would. */
  let failNextCommit = false;
  /** What Meta's echo says instead of what was sent (Meta may normalise a text it echoes). */
  let echoText: ((text: string | undefined) => string | undefined) | undefined;
  /** Meta's Send API answer waits until the echo it sent first is stored (its own row, by mid). */
  let holdAnswerUntilEchoStored = false;
  const stops: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    world = await createTestWorld();
    instance = await world.startInstance({ lockRetryDelayMs: 100 });
    const receiver = express().use(express.json());
    receiver.post("/webhooks/facebook", async (req, res) => {
      const platform = req.body.object === "instagram" ? "instagram" : "messenger";
      for (const entry of req.body.entry) {
        for (const item of entry.messaging) {
          if (echoText && item.message) item.message.text = echoText(item.message.text);
          await world.publish(echoEvent(String(entry.id), item, platform));
          if (holdAnswerUntilEchoStored && item.message) {
            const mid = item.message.mid;
            await eventually(async () => (await world.db.message.count({ where: { mid } })) > 0, {
              message: "the echo stored",
            });
          }
        }
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
      echoMode: "off",
    });
    metaServer = await meta.listen(0, "127.0.0.1");
    meta.state.addPage({ pageId: PAGE.pageId, token: PAGE.token });
    for (const psid of PEOPLE) meta.state.addUser({ pageId: PAGE.pageId, psid });
    await connectPage({ db: world.db, bus: world.bus, cipher }, { ...PAGE, name: "Send worker page" });
    meta.state.addPage({ pageId: IG.pageId, token: IG.token, platform: "instagram" });
    for (const psid of IG_PEOPLE) meta.state.addUser({ pageId: IG.pageId, psid });
    await connectPage(
      { db: world.db, bus: world.bus, cipher },
      { ...IG, name: "Send worker IG", platform: "instagram" },
    );

    // The worker's database: a commit can be made to fail once, after Meta answered.
    workerDb = new Proxy(world.db, {
      get(target, property, receiver) {
        if (property === "$transaction" && failNextCommit) {
          failNextCommit = false;
          return () => Promise.reject(new Error("Connection terminated unexpectedly"));
        }
        const value = Reflect.get(target, property, receiver);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const worker = await startSendWorker({
      bus: instance.bus,
      db: workerDb,
      lock: instance.lock,
      graphs: createGraphClients(
        {
          messenger: { baseUrl: metaServer.url, version: "v21.0", appSecret: APP_SECRET },
          instagram: { baseUrl: metaServer.instagramUrl, version: "v21.0", appSecret: APP_SECRET },
        },
        { maxRetries: 0, timeoutMs: 1000 },
      ),
      cipher,
      redis: instance.redis[0]!,
      redisKeyPrefix: world.keyPrefix,
      log,
      echoWaitMs: 300,
      graphTimeoutMs: 1000,
      maxAttempts: 3,
      ratePerPagePerSecond: RATE,
    });
    stops.push(worker.stop);
  });

  afterEach(() => {
    echoText = undefined;
    holdAnswerUntilEchoStored = false;
    meta.state.echoMode = "off";
    meta.state.clearErrors(PAGE.pageId);
    meta.state.clearErrors(IG.pageId);
  });

  afterAll(async () => {
    for (const stop of stops) await stop();
    await metaServer?.close();
    await new Promise((resolve) => echoReceiver?.close(resolve));
    await world?.close();
  });

  const queue = (psid: string, text: string) =>
    queueSend(
      { db: world.db, bus: world.bus },
      { pageId: PAGE.pageId, psid, content: { text, messaging_type: "RESPONSE" }, origin: "api" },
    );
  const callsFor = (id: string) =>
    meta.state.calls.filter(
      (c) =>
        c.endpoint === "messages" && (c.body as { message?: { metadata?: string } }).message?.metadata === id,
    );
  const settled = (id: string, timeoutMs = 20_000) =>
    eventually(
      async () => {
        const row = await world.db.message.findUniqueOrThrow({ where: { id } });
        return row.status !== "sending" && row;
      },
      { message: `message ${id} settled`, timeoutMs },
    );
  const sentEvents = async (id: string) =>
    (await world.domainEvents()).filter((e) => e.type === "message.sent" && e.messageId === id);

  it("Meta sent it but the answer was lost: the echo settles it and Meta is not called again", async () => {
    meta.state.echoMode = "after";
    meta.state.injectError(PAGE.pageId, { endpoint: "messages", afterSending: true, status: 502, times: 1 });
    const { id } = await queue(PEOPLE[0]!, "answer lost, echo comes");
    const row = await settled(id);
    expect(row.status).toBe("sent");
    expect(row.mid).toMatch(/^m_/);
    await new Promise((r) => setTimeout(r, 2000)); // past the unknown-outcome window: still one call
    expect(callsFor(id)).toHaveLength(1);
    await eventually(async () => (await sentEvents(id)).length === 1, {
      message: "message.sent from the echo",
    });
  });

  it("the answer was lost and no echo came: the thread says it went out, so it is recorded, not resent", async () => {
    meta.state.injectError(PAGE.pageId, {
      endpoint: "messages",
      afterSending: true,
      dropConnection: true,
      times: 1,
    });
    const { id } = await queue(PEOPLE[1]!, "answer lost, no echo");
    const row = await settled(id);
    expect(row.status).toBe("sent");
    const [sent] = meta.state.sentMessages.filter(
      (m) => (m.body.message as { metadata?: string }).metadata === id,
    );
    expect(row.mid).toBe(sent!.mid);
    expect(callsFor(id)).toHaveLength(1);
    expect(meta.state.calls.some((c) => c.endpoint === "conversations")).toBe(true);
    await eventually(async () => (await sentEvents(id)).length === 1, { message: "message.sent published" });
  });

  it("the commit fails right after Meta answered: the redelivery finds it sent and does not call Meta again", async () => {
    failNextCommit = true;
    const { id } = await queue(PEOPLE[2]!, "commit fails after the answer");
    const row = await settled(id);
    expect(row.status).toBe("sent");
    expect(callsFor(id)).toHaveLength(1);
  });

  it("a call known to have failed is made again; out of attempts the row says failed before the request is dead-lettered", async () => {
    meta.state.injectError(PAGE.pageId, { endpoint: "messages", code: 2, status: 500 });
    const { id } = await queue(PEOPLE[3]!, "Meta keeps failing");
    const row = await settled(id, 30_000);
    expect(row.status).toBe("failed");
    expect(row.error).toMatch(/not sent after 3 attempts/);
    expect(callsFor(id)).toHaveLength(3);
    await eventually(
      async () =>
        (await world.deadLetters()).some(
          (d) => d.headers["Sb-Stage"] === "send-worker" && /3 attempts/.test(d.reason ?? ""),
        ),
      { message: "dead letter with the reason" },
    );
  });

  it("a broadcast far above the page's rate ends all sent, none failed, each once, in queue order per person", async () => {
    const total = 200; // 5 s at 40/s: every message waits for its slot, none spends an attempt doing so
    const queued: Array<{ id: string; psid: string }> = [];
    for (let i = 0; i < total; i++) {
      const psid = PEOPLE[i % PEOPLE.length]!;
      queued.push({ id: (await queue(psid, `broadcast ${i}`)).id, psid });
    }
    await eventually(
      async () =>
        (await world.db.message.count({ where: { id: { in: queued.map((q) => q.id) }, status: "sent" } })) ===
        total,
      { message: "all broadcast messages sent", timeoutMs: 60_000 },
    );
    expect(
      await world.db.message.count({ where: { id: { in: queued.map((q) => q.id) }, status: "failed" } }),
    ).toBe(0);
    for (const { id } of queued) expect(callsFor(id)).toHaveLength(1);
    for (const psid of PEOPLE) {
      const mine = new Set(queued.filter((q) => q.psid === psid).map((q) => q.id));
      const sentOrder = meta.state.sentMessages
        .map((m) => (m.body.message as { metadata?: string }).metadata!)
        .filter((metadata) => mine.has(metadata));
      expect(sentOrder).toEqual(queued.filter((q) => q.psid === psid).map((q) => q.id));
    }
  }, 90_000);

  it("a slow Send API call does not hold the conversation lock, and Meta's time decides later watermarks", async () => {
    const psid = PEOPLE[4]!;
    meta.state.injectError(PAGE.pageId, { endpoint: "messages", delayMs: 700, times: 1 });
    const queuedAt = Date.now();
    const { id } = await queue(psid, "slow Meta");
    await eventually(() => callsFor(id).length === 1, { message: "call in flight" });
    // Another writer of this conversation (the person's incoming message) gets the lock meanwhile.
    const acquired = await instance.lock.withConversationLock({ psid, pageId: PAGE.pageId }, async () =>
      Date.now(),
    );
    const row = await settled(id);
    expect(acquired).toBeLessThan(row.sentAt.getTime());
    expect(row.sentAt.getTime()).toBeGreaterThanOrEqual(queuedAt + 600);
    // A delivery watermark between queueing and Meta's answer does not cover this message.
    await world.publish(events.delivery(PAGE.pageId, psid, queuedAt + 300));
    await world.settled();
    expect((await world.db.message.findUniqueOrThrow({ where: { id } })).status).toBe("sent");
  });

  it("the sweeper queues again a row whose request was lost, and it is sent once", async () => {
    const sweeper = startSendSweeper({
      db: world.db,
      bus: world.bus,
      log,
      intervalMs: 60_000,
      staleAfterMs: 200,
    });
    stops.push(sweeper.stop);
    // A row committed `sending` whose request never reached the stream (the outbox row is gone too).
    const brokenBus = {
      ...world.bus,
      js: { ...world.bus.js, publish: () => Promise.reject(new Error("no responders")) },
    } as unknown as typeof world.bus;
    const { id } = await queueSend(
      { db: world.db, bus: brokenBus },
      {
        pageId: PAGE.pageId,
        psid: PEOPLE[5]!,
        content: { text: "lost request", messaging_type: "RESPONSE" },
        origin: "api",
      },
    );
    await world.db.domainEventOutbox.deleteMany({ where: { id: `send-request:${id}` } });
    await new Promise((r) => setTimeout(r, 300));
    expect(await sweeper.sweep()).toBe(1);
    const row = await settled(id);
    expect(row.status).toBe("sent");
    expect(callsFor(id)).toHaveLength(1);
    expect(await sweeper.sweep()).toBe(0);
  });

  it("a send to a thread another app controls (10/2018300) fails at once with a reason a person can act on, never retried", async () => {
    meta.state.injectError(PAGE.pageId, { endpoint: "messages", code: 10, subcode: 2018300, times: 1 });
    const { id } = await queue(PEOPLE[5]!, "while the Page inbox has the thread");
    const row = await settled(id);
    expect(row.status).toBe("failed");
    expect(row.error).toMatch(/^another app controls this conversation \(conversation routing/);
    expect(callsFor(id)).toHaveLength(1);
  });

  describe("Instagram accounts", () => {
    const queueIg = (psid: string, text: string) =>
      queueSend(
        { db: world.db, bus: world.bus },
        { pageId: IG.pageId, psid, content: { text, messaging_type: "RESPONSE" }, origin: "api" },
      );
    const igSends = () => meta.state.sentMessages.filter((m) => m.pageId === IG.pageId);

    it("each send reaches the Instagram host once, without metadata, and its echo (before or after the answer) never makes a second row", async () => {
      const queued = [];
      // The echo before Meta's answer (matched to the send in flight), then after it (matched by mid).
      for (const [round, mode] of (["before", "before", "after"] as const).entries()) {
        meta.state.echoMode = mode;
        // Meta's answer comes late: the echo is stored while the send is still in flight.
        if (mode === "before") {
          meta.state.injectError(IG.pageId, { endpoint: "messages", afterSending: true, delayMs: 600 });
        } else meta.state.clearErrors(IG.pageId);
        const sent = [];
        for (const psid of IG_PEOPLE) sent.push(await queueIg(psid, `ig ${psid} ${round}`));
        for (const { id } of sent) expect((await settled(id)).status).toBe("sent");
        queued.push(...sent);
      }
      const calls = meta.state.calls.filter((c) => c.pageId === IG.pageId && c.endpoint === "messages");
      expect(calls).toHaveLength(queued.length);
      for (const call of calls) {
        expect(call).toMatchObject({ host: "instagram", token: IG.token, appsecretProofValid: true });
        const body = call.body as { messaging_type?: string; message: Record<string, unknown> };
        expect(body.message.metadata).toBeUndefined();
        expect(body.messaging_type).toBeUndefined();
      }
      // Every echo is in (one per send), matched to its row: no foreign row beside ours.
      await eventually(
        async () =>
          (await world.db.message.count({
            where: { pageId: IG.pageId, sentBy: "switchboard", mid: { not: null } },
          })) === queued.length,
        { message: "every Instagram send recorded with its mid" },
      );
      await new Promise((r) => setTimeout(r, 500));
      const rows = await world.db.message.findMany({
        where: { pageId: IG.pageId },
        orderBy: { queueSeq: "asc" },
      });
      expect(rows).toHaveLength(queued.length);
      expect(rows.every((r) => r.platform === "instagram" && r.direction === "outgoing")).toBe(true);
      expect(new Set(rows.map((r) => r.mid))).toEqual(new Set(igSends().map((m) => m.mid)));
      // Per person, in the order queued.
      for (const psid of IG_PEOPLE) {
        const texts = igSends()
          .filter((m) => m.psid === psid)
          .map((m) => (m.body.message as { text: string }).text);
        expect(texts).toEqual([0, 1, 2].map((round) => `ig ${psid} ${round}`));
      }
      const conversations = await world.db.conversation.findMany({ where: { pageId: IG.pageId } });
      expect(conversations.every((c) => c.platform === "instagram")).toBe(true);
    });

    it("Meta echoes a trimmed text before its answer, which is lost: still the send in flight, sent once, one row", async () => {
      meta.state.echoMode = "before";
      meta.state.injectError(IG.pageId, { endpoint: "messages", afterSending: true, delayMs: 600, times: 1 });
      echoText = (text) => text?.trim();
      const before = igSends().length;
      const { id } = await queueIg(IG_PEOPLE[1]!, "  spaced out reply  ");
      const row = await settled(id);
      expect(row.status).toBe("sent");
      expect(igSends()).toHaveLength(before + 1);
      const mid = igSends().at(-1)!.mid;
      expect(row.mid).toBe(mid);
      await new Promise((r) => setTimeout(r, 500));
      const withMid = await world.db.message.findMany({ where: { pageId: IG.pageId, mid } });
      expect(withMid.map((r) => [r.id, r.sentBy])).toEqual([[id, "switchboard"]]);
    });

    it("an echo no send matched (Meta changed its words) stored before Meta's answer is merged into the send's row, sent once", async () => {
      meta.state.echoMode = "before";
      echoText = (text) => `${text} ✨`;
      // Meta's answer waits until the echo's own row is stored: the worker then meets Meta's mid on it.
      holdAnswerUntilEchoStored = true;
      const before = igSends().length;
      const { id } = await queueIg(IG_PEOPLE[2]!, "your parcel left today");
      const row = await settled(id);
      expect(row.status).toBe("sent");
      expect(igSends()).toHaveLength(before + 1);
      const mid = igSends().at(-1)!.mid;
      expect(row.mid).toBe(mid);
      const withMid = await world.db.message.findMany({ where: { pageId: IG.pageId, mid } });
      expect(withMid.map((r) => [r.id, r.sentBy, r.text])).toEqual([
        [id, "switchboard", "your parcel left today"],
      ]);
      // The product heard of the echo's row, and hears it is gone; ours is announced sent.
      await eventually(
        async () => {
          const announced = await world.domainEvents();
          return (
            announced.some((e) => e.type === "message.deleted" && e.mid === mid && e.messageId !== id) &&
            announced.some((e) => e.type === "message.sent" && e.messageId === id && e.mid === mid)
          );
        },
        { message: "message.deleted for the echo's row and message.sent for ours" },
      );
    });

    it("the answer was lost and no echo came: the Instagram thread says it went out, so it is not sent again", async () => {
      meta.state.injectError(IG.pageId, {
        endpoint: "messages",
        afterSending: true,
        dropConnection: true,
        times: 1,
      });
      const before = igSends().length;
      const { id } = await queueIg(IG_PEOPLE[0]!, "ig answer lost");
      const row = await settled(id);
      expect(row.status).toBe("sent");
      expect(igSends()).toHaveLength(before + 1);
      expect(row.mid).toBe(igSends().at(-1)!.mid);
      const thread = meta.state.calls.filter((c) => c.pageId === IG.pageId && c.endpoint === "conversations");
      expect(thread.length).toBeGreaterThan(0);
      expect(thread.every((c) => c.host === "instagram" && c.query.platform === "instagram")).toBe(true);
    });
  });

  /** What the page-router publishes for an echo item (sender = page, recipient = person). */
  function echoEvent(
    pageId: string,
    item: EchoItem,
    platform: "messenger" | "instagram" = "messenger",
  ): MessagingEvent {
    const psid = String(item.recipient.id);
    return {
      kind: "echo",
      eventId: `echo:${item.message.mid}`,
      pageId,
      platform,
      standby: false,
      companyId: PAGE.companyId,
      psid,
      conversationKey: conversationKey(pageId, psid),
      timestamp: item.timestamp,
      traceId: uniqueId("trace"),
      receivedAt: Date.now(),
      raw: item,
      mid: item.message.mid,
      text: item.message.text ?? null,
      attachments: [],
      appId: item.message.app_id === undefined ? null : String(item.message.app_id),
      metadata: item.message.metadata ?? null,
    };
  }
});
