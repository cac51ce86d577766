import { type Bus, connectBus, deleteStreams } from "@switchboard/bus";
import { SendRequest } from "@switchboard/contracts";
import { createTokenCipher, generateTokenKey } from "@switchboard/crypto";
import { applyMigrations, createDb, type Db } from "@switchboard/db";
import { createLogger } from "@switchboard/observability";
import { connectPage, disconnectPage } from "@switchboard/pages";
import { createTestDatabase, type TestDatabase, testServices, uniqueId } from "@switchboard/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  IdempotencyKeyReusedError,
  PageUnavailableError,
  queueSend,
  SendQueueUnavailableError,
} from "./queue-send";

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
    // The replay re-published, and the stream dropped it as a duplicate of the same message id.
    expect((await queued()).filter((r) => r.messageId === first.id)).toHaveLength(1);

    await expect(
      queueSend({ db, bus }, { ...input, psid: "p2", idempotencyKey: "k-1", origin: "cli" }),
    ).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
  });

  it("removes the row when the queue does not acknowledge, so a retry with the same key starts clean", async () => {
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
    await expect(queueSend({ db: db, bus: broken }, input)).rejects.toBeInstanceOf(SendQueueUnavailableError);
    expect(await db.message.count({ where: { idempotencyKey: "k-3" } })).toBe(0);
    expect(await db.domainEventOutbox.count({ where: { id: { startsWith: "message.created:" } } })).toBe(0);

    const retried = await queueSend({ db, bus }, input);
    expect(retried.replayed).toBe(false);
    expect((await queued()).some((r) => r.messageId === retried.id)).toBe(true);
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
