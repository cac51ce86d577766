import { type Bus, connectBus, deleteStreams } from "@switchboard/bus";
import { SendRequest } from "@switchboard/contracts";
import { createTokenCipher, generateTokenKey } from "@switchboard/crypto";
import { applyMigrations, createDb, type Db } from "@switchboard/db";
import { createLogger } from "@switchboard/observability";
import { connectPage, disconnectPage } from "@switchboard/pages";
import { createTestDatabase, type TestDatabase, testServices, uniqueId } from "@switchboard/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IdempotencyKeyReusedError, PageUnavailableError, queueSend } from "./queue-send";

const log = createLogger({ service: "send-queue-test", level: "silent" });
const cipher = createTokenCipher(generateTokenKey("k1"));
const PAGE = "7300000000000001";

describe("queueSend", () => {
  let database: TestDatabase;
  let db: Db;
  let bus: Bus;

  beforeAll(async () => {
    database = await createTestDatabase(applyMigrations);
    db = createDb(database.url);
    bus = await connectBus({
      streams: "provision",
      servers: [testServices().natsUrl],
      name: "send-queue-test",
      namespace: uniqueId(),
      log,
    });
    await connectPage({ db, bus, cipher }, { pageId: PAGE, name: "Shop", companyId: "c1", token: "EAA-x" });
  });

  afterAll(async () => {
    await deleteStreams(bus.jsm, bus.topology);
    await bus.drain();
    await db.$disconnect();
    await database.drop();
  });

  /** What the sends work queue holds (nothing consumes it here); read by sequence, as a work queue has no
   * non-acking consumers. */
  const queued = async () => {
    const { state } = await bus.jsm.streams.info(bus.topology.streams.sends.name);
    const requests: SendRequest[] = [];
    for (let seq = state.first_seq; seq <= state.last_seq && state.messages > 0; seq++) {
      const stored = await bus.jsm.streams.getMessage(bus.topology.streams.sends.name, { seq });
      if (stored) requests.push(SendRequest.parse(stored.json()));
    }
    return requests;
  };

  it("stores the row sending, queues one request per message and answers a repeated key with the first row", async () => {
    const input = { pageId: PAGE, psid: "p1", content: { text: "hi", messaging_type: "RESPONSE" as const } };
    const first = await queueSend({ db, bus }, { ...input, idempotencyKey: "k-1", origin: "cli" });
    const again = await queueSend({ db, bus }, { ...input, idempotencyKey: "k-1", origin: "cli" });
    expect(first).toMatchObject({ status: "sending", replayed: false });
    expect(again).toEqual({ id: first.id, status: "sending", replayed: true });

    const row = await db.message.findUniqueOrThrow({ where: { id: first.id } });
    expect(row).toMatchObject({
      direction: "outgoing",
      kind: "text",
      text: "hi",
      mid: null,
      idempotencyKey: "k-1",
    });
    // Queued once: the replay answered from the row.
    expect((await queued()).filter((r) => r.messageId === first.id)).toHaveLength(1);

    await expect(
      queueSend({ db, bus }, { ...input, psid: "p2", idempotencyKey: "k-1", origin: "cli" }),
    ).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
  });

  it("commits the row and its request together: a broker outage after the commit leaves the request in the outbox", async () => {
    const broken: Bus = {
      ...bus,
      js: { ...bus.js, publish: () => Promise.reject(new Error("no responders")) } as unknown as Bus["js"],
    };
    const input = {
      pageId: PAGE,
      psid: "p3",
      content: { text: "lost?", messaging_type: "RESPONSE" as const },
      idempotencyKey: "k-3",
      origin: "api" as const,
    };
    const queuedWhileDown = await queueSend({ db: db, bus: broken }, input);
    expect(queuedWhileDown).toMatchObject({ status: "sending", replayed: false });
    // Nothing reached the stream, but the request waits in the outbox for the relay: never a row without it.
    expect((await queued()).some((r) => r.messageId === queuedWhileDown.id)).toBe(false);
    const waiting = await db.domainEventOutbox.findUniqueOrThrow({
      where: { id: `send-request:${queuedWhileDown.id}` },
    });
    expect(waiting.subject).toBe(bus.topology.subjects.sendRequest(PAGE));
    expect(waiting.payload).toMatchObject({ messageId: queuedWhileDown.id, psid: "p3", pageId: PAGE });

    // The same key again answers with the same row and queues nothing new.
    const retried = await queueSend({ db, bus }, input);
    expect(retried).toEqual({ id: queuedWhileDown.id, status: "sending", replayed: true });
  });

  it("refuses a page that is not active", async () => {
    await connectPage(
      { db, bus, cipher },
      { pageId: "7300000000000002", name: "Old", companyId: "c1", token: "t" },
    );
    await disconnectPage({ db, bus }, "7300000000000002");
    const send = (pageId: string) =>
      queueSend(
        { db, bus },
        { pageId, psid: "p1", content: { text: "x", messaging_type: "RESPONSE" }, origin: "api" },
      );
    await expect(send("7300000000000002")).rejects.toBeInstanceOf(PageUnavailableError);
    await expect(send("7300000000000009")).rejects.toThrow(/not connected/);
  });
});
