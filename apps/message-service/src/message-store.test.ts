import { randomUUID } from "node:crypto";
import type { MessageStatus } from "@switchboard/contracts";
import { eventually } from "@switchboard/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { conversationMessages, storeMessagingEvent } from "./message-store";
import { createTestWorld, events, type ServiceInstance, type TestWorld } from "./test-support";

const PAGE = "100200300400500";
const OTHER_PAGE = "900800700600500";
let world: TestWorld;
let service: ServiceInstance;
let t0: number;

beforeAll(async () => {
  world = await createTestWorld();
  service = await world.startInstance();
  t0 = Date.now() - 3_600_000;
});

afterAll(async () => {
  await world?.close();
});

async function messagesOf(psid: string, pageId = PAGE) {
  return conversationMessages(world.db, pageId, psid);
}

/** What issue 7's send worker does before calling the Send API: a `sending` row whose id is the metadata. */
async function storeOurSend(psid: string, sentAt: number): Promise<string> {
  const id = randomUUID();
  await service.lock.withConversationLock({ psid, pageId: PAGE }, async () => {
    const contact = await world.db.contact.upsert({
      where: { pageId_psid: { pageId: PAGE, psid } },
      create: { pageId: PAGE, psid },
      update: {},
    });
    const conversation = await world.db.conversation.upsert({
      where: { pageId_contactId: { pageId: PAGE, contactId: contact.id } },
      create: { pageId: PAGE, contactId: contact.id },
      update: {},
    });
    await world.db.message.create({
      data: {
        id,
        pageId: PAGE,
        conversationId: conversation.id,
        direction: "outgoing",
        kind: "text",
        text: "our reply",
        status: "sending",
        sentAt: new Date(sentAt),
      },
    });
  });
  return id;
}

/** The send worker recording the Send API's answer: mid and `sent`, never moving a status backwards. */
async function recordSendResponse(id: string, mid: string) {
  await world.db.message.updateMany({ where: { id, mid: null }, data: { mid } });
  await world.db.message.updateMany({ where: { id, status: "sending" }, data: { status: "sent" } });
}

describe("message-service", () => {
  it("stores an incoming text message with its contact and conversation, and publishes domain events once", async () => {
    const event = events.message(PAGE, "psid-text", "m_text_1", t0, "hi there");
    await world.publish(event);
    await world.publish(event, `${event.eventId}:redelivered`);

    const [row] = await eventually(async () => {
      const rows = await messagesOf("psid-text");
      return rows.length > 0 && rows;
    });
    expect(row).toMatchObject({ mid: "m_text_1", direction: "incoming", kind: "text", text: "hi there" });
    expect(row?.status).toBe("received");
    expect(row?.sentAt.getTime()).toBe(t0);
    const contact = await world.db.contact.findUniqueOrThrow({
      where: { pageId_psid: { pageId: PAGE, psid: "psid-text" } },
    });
    expect(contact.firstName).toBe("Ada");
    const conversation = await world.db.conversation.findFirstOrThrow({ where: { contactId: contact.id } });
    expect(conversation.lastMessageAt?.getTime()).toBe(t0);

    await world.settled();
    const domain = (await world.domainEvents()).filter((e) => e.psid === "psid-text");
    expect(domain.map((e) => e.type).sort()).toEqual(["conversation.created", "message.created"]);
    expect(await world.db.domainEventOutbox.count()).toBe(0);
  });

  it("stores 200 events delivered twice each through 4 racing instances exactly once", async () => {
    const racers = [service, ...(await Promise.all([1, 2, 3].map(() => world.startInstance())))];
    expect(racers).toHaveLength(4);
    const psids = Array.from({ length: 20 }, (_, i) => `psid-race-${i}`);
    const batch = Array.from({ length: 200 }, (_, i) => {
      const pageId = i % 2 === 0 ? PAGE : OTHER_PAGE;
      const psid = psids[i % psids.length] as string;
      return events.message(pageId, psid, `m_race_${i}`, t0 + 1000 + i);
    });
    // Each event twice under different bus ids: the stream cannot deduplicate, the service must.
    await Promise.all(
      batch.flatMap((e) => [world.publish(e, `${e.eventId}:a`), world.publish(e, `${e.eventId}:b`)]),
    );

    await eventually(
      async () => (await world.db.message.count({ where: { mid: { startsWith: "m_race_" } } })) >= 200,
      {
        timeoutMs: 40_000,
        message: "200 race rows",
      },
    );
    await world.settled();
    expect(await world.db.message.count({ where: { mid: { startsWith: "m_race_" } } })).toBe(200);
    const contacts = await world.db.contact.groupBy({
      by: ["pageId", "psid"],
      where: { psid: { startsWith: "psid-race-" } },
      _count: true,
    });
    // Even indexes go to PAGE, odd to OTHER_PAGE, and 20 PSIDs cycle: each PSID talks to one page.
    expect(contacts).toHaveLength(20);
    expect(contacts.every((c) => c._count === 1)).toBe(true);
    const conversations = await world.db.conversation.findMany({
      where: { contact: { psid: { startsWith: "psid-race-" } } },
      include: { _count: { select: { messages: true } } },
    });
    expect(conversations).toHaveLength(20);
    expect(conversations.every((c) => c._count.messages === 10)).toBe(true);

    const domain = (await world.domainEvents()).filter((e) => e.psid.startsWith("psid-race-"));
    expect(domain.filter((e) => e.type === "message.created")).toHaveLength(200);
    expect(domain.filter((e) => e.type === "conversation.created")).toHaveLength(20);
    expect((await world.deadLetters()).length).toBe(0);
    const total = async (name: string, filter: (labels: Record<string, unknown>) => boolean = () => true) => {
      const values = await Promise.all(
        racers.map(async (r) => (await r.registry.getSingleMetric(name)?.get())?.values ?? []),
      );
      return values
        .flat()
        .filter((v) => filter(v.labels as Record<string, unknown>) && !("le" in v.labels))
        .reduce((sum, v) => sum + v.value, 0);
    };
    // Every delivery was handled (acked), each under its conversation's lock: in batches, so fewer
    // acquisitions than deliveries, one per batch or per event of a split batch.
    expect(
      await total("switchboard_messaging_events_total", (l) => l.outcome === "acked"),
    ).toBeGreaterThanOrEqual(400);
    const acquisitions = await total("switchboard_lock_acquired_total");
    expect(acquisitions).toBeGreaterThan(0);
    expect(acquisitions).toBeLessThan(400);
  }, 50_000);

  it("keeps one row for our send whether its echo comes before or after the send response", async () => {
    const psid = "psid-echo";
    const echoFirst = await storeOurSend(psid, t0 + 10_000);
    await world.publish(events.echo(PAGE, psid, "m_echo_first", t0 + 10_050, echoFirst));
    await eventually(
      async () => (await world.db.message.findUnique({ where: { id: echoFirst } }))?.mid === "m_echo_first",
    );
    await recordSendResponse(echoFirst, "m_echo_first");

    const responseFirst = await storeOurSend(psid, t0 + 20_000);
    await recordSendResponse(responseFirst, "m_response_first");
    const lateEcho = events.echo(PAGE, psid, "m_response_first", t0 + 20_050, responseFirst);
    await world.publish(lateEcho);
    await world.publish(lateEcho, `${lateEcho.eventId}:again`);

    // Sent from the Page inbox: no metadata, no row yet.
    await world.publish(events.echo(PAGE, psid, "m_inbox", t0 + 30_000));
    await world.settled();

    const rows = await messagesOf(psid);
    expect(
      rows.map((r) => [r.id === echoFirst || r.id === responseFirst ? "ours" : "inbox", r.mid, r.status]),
    ).toEqual([
      ["ours", "m_echo_first", "sent"],
      ["ours", "m_response_first", "sent"],
      ["inbox", "m_inbox", "sent"],
    ]);
    // Confirmed in place: ordered by Meta's timestamp from the echo, whichever came first.
    expect(rows[0]?.sentAt.getTime()).toBe(t0 + 10_050);
    expect(rows[1]?.sentAt.getTime()).toBe(t0 + 20_050);
    const created = (await world.domainEvents()).filter(
      (e) => e.psid === psid && e.type === "message.created",
    );
    expect(created).toHaveLength(1);
  });

  it("confirms our send with Meta's timestamp when the send response commits while the echo is being stored", async () => {
    // CI saw it: the echo looked the row up by mid (not there yet), the send worker committed the mid,
    // then the echo looked for "id = metadata AND mid IS NULL" (not any more) and stored nothing.
    const psid = "psid-echo-race";
    const ours = await storeOurSend(psid, t0 + 40_000);
    let responded = false;
    const racing = world.db.$extends({
      query: {
        message: {
          async $allOperations({ operation, args, query }) {
            const result = await query(args);
            if (!responded && operation.startsWith("find")) {
              responded = true;
              await recordSendResponse(ours, "m_race"); // another connection: the send worker
            }
            return result;
          },
        },
      },
    }) as unknown as typeof world.db;
    await storeMessagingEvent(
      racing,
      world.bus.topology,
      events.echo(PAGE, psid, "m_race", t0 + 40_050, ours),
    );
    expect(responded).toBe(true);
    const rows = await messagesOf(psid);
    expect(rows.map((r) => [r.id, r.mid, r.status, r.sentAt.getTime()])).toEqual([
      [ours, "m_race", "sent", t0 + 40_050],
    ]);
  });

  it("applies a read watermark that arrived before the message when the message arrives", async () => {
    const psid = "psid-watermark";
    await world.publish(events.message(PAGE, psid, "m_wm_in", t0));
    await world.publish(events.delivery(PAGE, psid, t0 + 5_000));
    await world.publish(events.read(PAGE, psid, t0 + 3_000));
    await world.settled();
    const ours = await storeOurSend(psid, t0 + 1_000);
    await world.publish(events.echo(PAGE, psid, "m_wm_ours", t0 + 1_500, ours));
    await world.publish(events.echo(PAGE, psid, "m_wm_inbox_read", t0 + 2_000));
    await world.publish(events.echo(PAGE, psid, "m_wm_inbox_delivered", t0 + 4_000));
    await world.publish(events.echo(PAGE, psid, "m_wm_inbox_sent", t0 + 6_000));
    await world.settled();

    const rows = await messagesOf(psid);
    expect(rows.map((r) => [r.mid, r.status])).toEqual([
      ["m_wm_in", "received"],
      ["m_wm_ours", "read"],
      ["m_wm_inbox_read", "read"],
      ["m_wm_inbox_delivered", "delivered"],
      ["m_wm_inbox_sent", "sent"],
    ]);
  });

  it("never moves a status backwards", async () => {
    const psid = "psid-backwards";
    const ours = await storeOurSend(psid, t0 + 1_000);
    await recordSendResponse(ours, "m_bw_1");
    await world.publish(events.echo(PAGE, psid, "m_bw_2", t0 + 2_000));
    await world.publish(events.read(PAGE, psid, t0 + 2_000));
    await world.settled();
    const statusOf = async (mid: string) =>
      (await world.db.message.findUniqueOrThrow({ where: { pageId_mid: { pageId: PAGE, mid } } })).status;
    expect([await statusOf("m_bw_1"), await statusOf("m_bw_2")]).toEqual(["read", "read"]);

    // Late and repeated signals: an older read, a delivery naming the mids, the echo again.
    const stale = [
      events.delivery(PAGE, psid, t0 + 2_500, ["m_bw_1", "m_bw_2"]),
      events.read(PAGE, psid, t0 + 1_500),
      events.echo(PAGE, psid, "m_bw_1", t0 + 1_000, ours),
      events.echo(PAGE, psid, "m_bw_2", t0 + 2_000),
    ];
    for (const event of stale) await world.publish(event);
    await world.settled();
    expect([await statusOf("m_bw_1"), await statusOf("m_bw_2")]).toEqual<MessageStatus[]>(["read", "read"]);
    const conversation = await world.db.conversation.findFirstOrThrow({ where: { contact: { psid } } });
    expect(conversation.readWatermark?.getTime()).toBe(t0 + 2_000);

    const changes = (await world.domainEvents()).filter(
      (e) => e.psid === psid && e.type === "message.status_changed",
    );
    expect(changes.map((e) => (e.type === "message.status_changed" ? e.status : null)).sort()).toEqual([
      "read",
      "read",
    ]);
  });
});
