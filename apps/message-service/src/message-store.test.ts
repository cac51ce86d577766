import { eventually } from "@switchboard/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { conversationMessages } from "./message-store";
import { createTestWorld, events, type TestWorld } from "./test-support";

const PAGE = "100200300400500";
let world: TestWorld;
let t0: number;

beforeAll(async () => {
  world = await createTestWorld();
  await world.startInstance();
  t0 = Date.now() - 60_000;
});

afterAll(async () => {
  await world?.close();
});

describe("message-service", () => {
  it("stores an incoming text message with its contact and conversation, and publishes domain events once", async () => {
    const event = events.message(PAGE, "psid-text", "m_text_1", t0, "hi there");
    await world.publish(event);
    await world.publish(event, `${event.eventId}:redelivered`);

    const [row] = await eventually(async () => {
      const rows = await conversationMessages(world.db, PAGE, "psid-text");
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
});
