import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { listStored, publishRaw } from "@switchboard/bus";
import {
  buildTextMessageItem,
  conversationKey,
  echoSenderOf,
  Headers,
  INSTAGRAM_INBOX_APP_ID,
  MessagingEvent,
  MessagingItem,
  PAGE_INBOX_APP_ID,
  quoteLongIds,
  USER_REF_PSID_PREFIX,
} from "@switchboard/contracts";
import { listMessages } from "@switchboard/conversations";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { conversationMessages } from "./message-store";
import {
  createTestWorld,
  events,
  OUR_APP_ID,
  type ServiceInstance,
  TEST_CIPHER,
  type TestWorld,
} from "./test-support";

const PAGE = "100200300400500";
let world: TestWorld;
let service: ServiceInstance;

beforeAll(async () => {
  world = await createTestWorld();
  service = await world.startInstance();
});

afterAll(async () => {
  await world?.close();
});

type RecordedItem = Record<string, unknown>;
const fixtures = JSON.parse(
  quoteLongIds(
    readFileSync(new URL("../../../packages/contracts/fixtures/peer-webhooks.json", import.meta.url), "utf8"),
  ),
) as Array<{ name: string; messaging_event: RecordedItem }>;

function recorded(name: string): RecordedItem {
  const fixture = fixtures.find((f) => f.name === name);
  if (!fixture) throw new Error(`no fixture ${name}`);
  return structuredClone(fixture.messaging_event);
}

/**
 * The event the page-router publishes for a Meta item of `pageId` (its normaliser maps fields the same
 * way; it lives in another app, so the mapping is repeated here and checked against the contract).
 */
function routed(raw: RecordedItem, pageId: string): MessagingEvent {
  const item = MessagingItem.parse(raw);
  const userRef = item.sender?.user_ref ?? (item.optin as { user_ref?: string } | undefined)?.user_ref;
  const psid = item.sender?.id ?? `${USER_REF_PSID_PREFIX}${userRef}`;
  const timestamp = item.timestamp ?? Date.now();
  const kind = item.message
    ? "message"
    : item.postback
      ? "postback"
      : item.reaction
        ? "reaction"
        : item.referral
          ? "referral"
          : item.optin
            ? "optin"
            : "unsupported";
  const base = {
    eventId: `${pageId}:${kind}:${createHash("sha256").update(JSON.stringify(raw)).digest("base64url")}`,
    pageId,
    companyId: "company-1",
    psid,
    conversationKey: conversationKey(pageId, psid),
    timestamp,
    traceId: "trace-event-kinds",
    receivedAt: timestamp,
    raw,
  };
  const str = (v: unknown) => (typeof v === "string" ? v : typeof v === "number" ? String(v) : null);
  const { message, postback, reaction } = item;
  if (message) {
    return MessagingEvent.parse({
      ...base,
      kind,
      mid: message.mid,
      text: message.text ?? null,
      attachments: (message.attachments ?? []).map((a) => {
        const payload = a.payload && typeof a.payload === "object" ? a.payload : undefined;
        return {
          type: a.type,
          url: str(payload?.url) ?? a.url ?? a.URL ?? null,
          stickerId: str(payload?.sticker_id),
          title: a.title ?? str(payload?.title),
          payload: a.payload ?? null,
        };
      }),
      quickReplyPayload: message.quick_reply?.payload ?? null,
      replyToMid: message.reply_to?.mid ?? null,
      profile: null,
      profileStatus: "not_requested",
    });
  }
  if (postback) {
    return MessagingEvent.parse({
      ...base,
      kind,
      mid: postback.mid ?? null,
      title: postback.title ?? null,
      payload: postback.payload ?? null,
      referral: postback.referral ?? null,
    });
  }
  if (reaction) {
    return MessagingEvent.parse({
      ...base,
      kind,
      action: reaction.action,
      reaction: reaction.reaction ?? null,
      emoji: reaction.emoji ?? null,
      targetMid: reaction.mid ?? null,
    });
  }
  if (kind === "referral") return MessagingEvent.parse({ ...base, kind, referral: item.referral });
  if (kind === "optin") return MessagingEvent.parse({ ...base, kind, optin: item.optin });
  const fields = Object.keys(item).filter((k) => !["sender", "recipient", "timestamp"].includes(k));
  return MessagingEvent.parse({ ...base, kind, reason: `unmodelled item: ${fields.join(", ")}` });
}

/** Publishes the event, then the same event again as a redelivery the stream cannot deduplicate. */
async function publishTwice(event: MessagingEvent) {
  await world.publish(event);
  await world.publish(event, `${event.eventId}:redelivered`);
}

async function messageRow(pageId: string, mid: string) {
  return world.db.message.findUniqueOrThrow({ where: { pageId_mid: { pageId, mid } } });
}

describe("reactions", () => {
  it("records react and unreact on the target message, the latest Meta timestamp winning, even before the message arrives", async () => {
    // Recorded items: a react, then an unreact 23 minutes later, on "original_message_id" from "USER_ID".
    const react = routed(recorded("reaction-react-sad-escaped-emoji"), PAGE);
    const unreact = routed(recorded("reaction-unreact-no-emoji"), PAGE);
    const where = {
      pageId_targetMid_psid: { pageId: PAGE, targetMid: "original_message_id", psid: "USER_ID" },
    };
    const reactionRow = () => world.db.messageReaction.findUniqueOrThrow({ where });

    await publishTwice(react);
    await world.settled();
    expect(await world.db.message.count({ where: { mid: "original_message_id" } })).toBe(0);
    expect(await reactionRow()).toMatchObject({
      reaction: "sad",
      emoji: "😢",
      removed: false,
      reactedAt: new Date(react.timestamp),
    });

    await world.publish(events.message(PAGE, "USER_ID", "original_message_id", react.timestamp - 60_000));
    await world.settled();
    const target = await messageRow(PAGE, "original_message_id");
    expect(await reactionRow()).toMatchObject({ targetMid: target.mid, removed: false, reaction: "sad" });

    await publishTwice(unreact);
    await world.settled();
    expect(await reactionRow()).toMatchObject({
      reaction: null,
      emoji: null,
      removed: true,
      reactedAt: new Date(unreact.timestamp),
    });

    // The older react delivered late does not bring the reaction back.
    await world.publish(react, `${react.eventId}:late`);
    await world.settled();
    expect(await reactionRow()).toMatchObject({ removed: true, reactedAt: new Date(unreact.timestamp) });

    const reactAgain = events.reaction(
      PAGE,
      "USER_ID",
      "original_message_id",
      unreact.timestamp + 1,
      "react",
    );
    await world.publish(reactAgain);
    await world.settled();
    expect(await reactionRow()).toMatchObject({ reaction: "love", emoji: "❤", removed: false });
    expect(await world.db.messageReaction.count({ where: { pageId: PAGE, psid: "USER_ID" } })).toBe(1);
  });
});

describe("message edits (message_edits)", () => {
  const page = "100200300400509";
  const edited = async (mid: string) =>
    (await world.domainEvents()).filter((e) => e.type === "message.edited" && e.mid === mid);

  it("takes the latest revision's text, counts edits, keeps every revision once, and announces each higher one", async () => {
    const psid = "7200000000000001";
    const sentAt = Date.now() - 60_000;
    await world.publish(events.message(page, psid, "m_edit_1", sentAt, "I'd like 2 pairs"));
    await world.settled();
    await world.publish(events.edit(page, psid, "m_edit_1", 1, "I'd like 3 pairs", sentAt + 1000));
    await world.settled();
    expect(await messageRow(page, "m_edit_1")).toMatchObject({
      text: "I'd like 3 pairs",
      editCount: 1,
      editedAt: new Date(sentAt + 1000),
    });
    // The second edit, then the first again (Meta's retry) and the second again: nothing goes back.
    await world.publish(events.edit(page, psid, "m_edit_1", 2, "I'd like 4 pairs", sentAt + 2000));
    await world.settled();
    await world.publish(events.edit(page, psid, "m_edit_1", 1, "I'd like 3 pairs", sentAt + 1000), null);
    await world.publish(events.edit(page, psid, "m_edit_1", 2, "I'd like 4 pairs", sentAt + 2000), null);
    await world.settled();
    const row = await messageRow(page, "m_edit_1");
    expect(row).toMatchObject({ text: "I'd like 4 pairs", editCount: 2 });
    const revisions = await world.db.messageEdit.findMany({
      where: { pageId: page, mid: "m_edit_1" },
      orderBy: { numEdit: "asc" },
    });
    expect(revisions.map((r) => [r.numEdit, r.text])).toEqual([
      [1, "I'd like 3 pairs"],
      [2, "I'd like 4 pairs"],
    ]);
    const announced = await edited("m_edit_1");
    expect(announced.map((e) => (e as { editCount: number }).editCount)).toEqual([1, 2]);
    expect(announced[0]).toMatchObject({ messageId: row.id, conversationId: row.conversationId, psid });
  });

  it("applies an edit that arrives before its message when the message arrives", async () => {
    const psid = "7200000000000002";
    const sentAt = Date.now() - 30_000;
    await world.publish(events.edit(page, psid, "m_edit_early", 3, "final words", sentAt + 3000));
    await world.publish(events.edit(page, psid, "m_edit_early", 1, "first change", sentAt + 1000));
    await world.settled();
    expect(await world.db.message.count({ where: { pageId: page, mid: "m_edit_early" } })).toBe(0);
    await world.publish(events.message(page, psid, "m_edit_early", sentAt, "original words"));
    await world.settled();
    expect(await messageRow(page, "m_edit_early")).toMatchObject({ text: "final words", editCount: 3 });
    const kinds = (await world.domainEvents())
      .filter((e) => "mid" in e && e.mid === "m_edit_early")
      .map((e) => e.type);
    expect(kinds).toEqual(["message.created", "message.edited"]);
    // The Conversations API shows the latest text and the edit count.
    const conversation = await world.db.conversation.findFirstOrThrow({
      where: { pageId: page, contact: { psid } },
    });
    const {
      data: [view],
    } = await listMessages(world.db, conversation.id, { limit: 10, order: "asc" });
    expect(view).toMatchObject({
      text: "final words",
      editCount: 3,
      editedAt: new Date(sentAt + 3000).toISOString(),
    });
  });
});

describe("unsent messages (Instagram is_deleted)", () => {
  const page = "17841400000000509";
  const deleted = async (mid: string) =>
    (await world.domainEvents()).filter((e) => e.type === "message.deleted" && e.mid === mid);

  it("keeps the row in its place, clears its text, URLs and revisions, announces it once, and no later edit brings the text back", async () => {
    const psid = "7300000000000001";
    const sentAt = Date.now() - 60_000;
    const withPhoto = {
      ...events.message(page, psid, "m_unsend_1", sentAt, "my address is 1 Main St"),
      attachments: [
        {
          type: "image",
          url: "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1",
          stickerId: null,
          title: null,
          payload: {},
        },
      ],
    } as MessagingEvent;
    await world.publish(withPhoto);
    await world.publish(events.message(page, psid, "m_unsend_2", sentAt + 10, "next one"));
    await world.publish(events.edit(page, psid, "m_unsend_1", 1, "my address is 2 Main St", sentAt + 20));
    await world.settled();
    await world.publish(events.unsend(page, psid, "m_unsend_1", sentAt + 30));
    await world.publish(events.unsend(page, psid, "m_unsend_1", sentAt + 30), null); // Meta's retry
    await world.settled();
    const row = await messageRow(page, "m_unsend_1");
    expect(row).toMatchObject({ text: null, deletedAt: new Date(sentAt + 30), sentAt: new Date(sentAt) });
    expect(row.payload).toEqual({ unsent: true, attachments: [{ type: "image" }] });
    expect(JSON.stringify(row.payload)).not.toContain("lookaside");
    const revisions = await world.db.messageEdit.findMany({ where: { pageId: page, mid: "m_unsend_1" } });
    expect(revisions.map((r) => r.text)).toEqual([null]);
    expect(await deleted("m_unsend_1")).toHaveLength(1);
    // Its place in the conversation is kept, and the neighbour is untouched.
    const order = (await conversationMessages(world.db, page, psid)).map((m) => [m.mid, m.text]);
    expect(order).toEqual([
      ["m_unsend_1", null],
      ["m_unsend_2", "next one"],
    ]);
    await world.publish(events.edit(page, psid, "m_unsend_1", 2, "back again?", sentAt + 40));
    await world.settled();
    expect((await messageRow(page, "m_unsend_1")).text).toBeNull();
    const late = await world.db.messageEdit.findUniqueOrThrow({
      where: { pageId_mid_numEdit: { pageId: page, mid: "m_unsend_1", numEdit: 2 } },
    });
    expect(late.text).toBeNull();
  });

  it("applies an unsend that arrives before its message when the message arrives", async () => {
    const psid = "7300000000000002";
    const sentAt = Date.now() - 30_000;
    await world.publish(events.unsend(page, psid, "m_unsend_early", sentAt + 5));
    await world.settled();
    expect(await world.db.message.count({ where: { pageId: page, mid: "m_unsend_early" } })).toBe(0);
    await world.publish(events.message(page, psid, "m_unsend_early", sentAt, "oops"));
    await world.settled();
    expect(await messageRow(page, "m_unsend_early")).toMatchObject({
      text: null,
      deletedAt: new Date(sentAt + 5),
    });
    const kinds = (await world.domainEvents())
      .filter((e) => "mid" in e && e.mid === "m_unsend_early")
      .map((e) => e.type);
    expect(kinds).toEqual(["message.created", "message.deleted"]);
  });
});

describe("echoes: who sent them, templates included", () => {
  const page = "100200300400511";

  it("stores a template echo (url: null, recorded by airyhq/airy#2116) as outgoing with its raw payload, and says who sent each echo by app_id", async () => {
    const psid = "7400000000000001";
    const at = Date.now() - 10_000;
    const template = {
      ...events.echo(page, psid, "m_echo_template", at),
      appId: "936557276482485",
      metadata: "airy_bot",
      text: "Hey FIRST_NAME, ...",
      attachments: [
        {
          type: "template",
          url: null,
          stickerId: null,
          title: "Hey FIRST_NAME, ...",
          payload: { template_type: "button", buttons: [{ type: "postback", title: "Yes", payload: "YES" }] },
        },
      ],
      raw: {
        message: { mid: "m_echo_template", is_echo: true, attachments: [{ type: "template", url: null }] },
      },
    } as MessagingEvent;
    const inbox = {
      ...events.echo(page, psid, "m_echo_inbox", at + 1),
      appId: PAGE_INBOX_APP_ID,
    } as MessagingEvent;
    const ours = { ...events.echo(page, psid, "m_echo_ours", at + 2), appId: OUR_APP_ID } as MessagingEvent;
    const none = { ...events.echo(page, psid, "m_echo_none", at + 3), appId: null } as MessagingEvent;
    for (const event of [template, inbox, ours, none]) await world.publish(event);
    await world.settled();
    await world.publish(inbox, null); // a redelivered inbox echo stays the inbox's
    await world.settled();

    const row = await messageRow(page, "m_echo_template");
    expect(row).toMatchObject({ direction: "outgoing", kind: "attachment", sentBy: "other_app" });
    expect((row.payload as { raw: unknown }).raw).toEqual(template.raw);
    expect((row.payload as { attachments: Array<{ url: unknown }> }).attachments[0]?.url).toBeNull();
    expect((await messageRow(page, "m_echo_inbox")).sentBy).toBe("page_inbox");
    expect((await messageRow(page, "m_echo_ours")).sentBy).toBe("switchboard");
    expect((await messageRow(page, "m_echo_none")).sentBy).toBe("unknown");
    expect(echoSenderOf(INSTAGRAM_INBOX_APP_ID, OUR_APP_ID)).toBe("instagram_inbox");
  });
});

describe("conversation events", () => {
  it("keeps referral, optin, unsupported and target-less reaction items on their conversation, raw payload whole, once", async () => {
    const page = "100200300400501";
    const referralItem = recorded("referral-mme-shortlink");
    const optinItem = recorded("optin-checkbox-no-sender");
    const handoverItem = {
      sender: { id: "psid-handover" },
      recipient: { id: page },
      timestamp: 1_700_000_000_000,
      pass_thread_control: { new_owner_app_id: "123456789", metadata: "to the inbox" },
    };
    const reactionItem = {
      sender: { id: "psid-handover" },
      recipient: { id: page },
      timestamp: 1_700_000_001_000,
      reaction: { action: "react", emoji: "👍", reaction: "like" },
    };
    const routedEvents = [referralItem, optinItem, handoverItem, reactionItem].map((i) => routed(i, page));
    for (const event of routedEvents) await publishTwice(event);
    await world.settled();

    const rows = await world.db.conversationEvent.findMany({
      where: { pageId: page },
      include: { conversation: { include: { contact: true } } },
      orderBy: { occurredAt: "asc" },
    });
    expect(
      rows.map((r) => ({
        kind: r.kind,
        psid: r.conversation.contact.psid,
        eventId: r.eventId,
        occurredAt: r.occurredAt.getTime(),
        payload: r.payload,
      })),
    ).toEqual([
      {
        kind: "optin",
        psid: "user_ref:123-abc",
        eventId: routedEvents[1]?.eventId,
        // Recorded in seconds; Meta's clock in milliseconds.
        occurredAt: 1_234_567_890_000,
        payload: optinItem,
      },
      {
        kind: "referral",
        psid: "1476077111119289",
        eventId: routedEvents[0]?.eventId,
        occurredAt: 1_511_111_143_921,
        payload: referralItem,
      },
      {
        kind: "unsupported",
        psid: "psid-handover",
        eventId: routedEvents[2]?.eventId,
        occurredAt: 1_700_000_000_000,
        payload: { reason: "unmodelled item: pass_thread_control", raw: handoverItem },
      },
      {
        kind: "reaction",
        psid: "psid-handover",
        eventId: routedEvents[3]?.eventId,
        occurredAt: 1_700_000_001_000,
        payload: reactionItem,
      },
    ]);
    expect(await world.db.message.count({ where: { pageId: page } })).toBe(0);
    expect(await world.db.messageReaction.count({ where: { pageId: page } })).toBe(0);
  });
});

describe("recorded messages and postbacks", () => {
  it("stores a postback as an incoming message of kind postback with its title and payload", async () => {
    const page = "100200300400502";
    const getStarted = routed(recorded("postback-get-started-with-referral-and-title"), page);
    const guest = routed(recorded("postback-customer-chat-plugin-guest-user-ref"), page);
    await publishTwice(getStarted);
    await publishTwice(guest);
    await world.settled();

    const [started] = await conversationMessages(world.db, page, "1476077422222289");
    expect(started).toMatchObject({
      // Recorded without a mid: the stable event id stands in, so a redelivery finds the row.
      mid: `postback:${getStarted.eventId}`,
      direction: "incoming",
      kind: "postback",
      text: "Get Started",
      status: "received",
      sentAt: new Date(1_522_222_894_827),
      payload: {
        title: "Get Started",
        payload: "__GET_STARTED__",
        referral: { source: "SHORTLINK", type: "OPEN_THREAD", ref: "aaaa" },
        raw: getStarted.raw,
      },
    });
    const [guestRow] = await conversationMessages(world.db, page, "user_ref:987654321432");
    expect(guestRow).toMatchObject({ kind: "postback", text: "", payload: { title: "", payload: "hey" } });
    expect(await world.db.message.count({ where: { pageId: page } })).toBe(2);
  });

  it("keeps attachments, sticker id, quick reply payload and reply_to in the message payload", async () => {
    // Several recorded items share one mid: each gets its own page, as the same mid on one page is one message.
    const named = [
      "image-attachment-fbcdn-url",
      "sticker-like-button-legacy",
      "fallback-legacy-payload-null-uppercase-URL",
      "text-quick-reply",
    ];
    const items: RecordedItem[] = named.map(recorded);
    const reply = buildTextMessageItem({
      pageId: "404217156637689",
      psid: "1423587017700273",
      mid: "m_reply",
      text: "answering",
      timestamp: 1_491_799_000_000,
    });
    items.push({ ...reply, message: { ...reply.message, reply_to: { mid: "m_original" } } });
    const pages = items.map((_, i) => `20000000000000${i}`);
    const routedEvents = items.map((item, i) => routed(item, pages[i] as string));
    for (const event of routedEvents) await publishTwice(event);
    await world.settled();

    const rows = await Promise.all(
      routedEvents.map(async (e) => messageRow(e.pageId, e.kind === "message" ? e.mid : "")),
    );
    for (const [i, row] of rows.entries()) {
      expect(await world.db.message.count({ where: { pageId: pages[i] } })).toBe(1);
      expect(row.direction).toBe("incoming");
      expect((row.payload as { raw: unknown }).raw).toEqual(items[i]);
    }
    const [image, sticker, fallback, quickReply, replyTo] = rows;
    expect(image).toMatchObject({ kind: "attachment", text: null });
    expect(image?.payload).toMatchObject({
      attachments: [
        {
          type: "image",
          url: expect.stringMatching(/^https:\/\/scontent\.xx\.fbcdn\.net\/.+17887258_/),
          stickerId: null,
          title: null,
          payload: { url: expect.any(String) },
        },
      ],
      quickReplyPayload: null,
      replyToMid: null,
      replyToStory: null,
      unsupported: false,
      referral: null,
    });
    expect(sticker).toMatchObject({ kind: "attachment" });
    expect(sticker?.payload).toMatchObject({
      attachments: [{ type: "image", stickerId: "369239263222822", url: expect.stringContaining("fbcdn") }],
    });
    expect(fallback?.payload).toMatchObject({
      attachments: [
        {
          type: "fallback",
          url: "URL_OF_THE_ATTACHMENT",
          title: "TITLE_OF_THE_URL_ATTACHMENT",
          stickerId: null,
          payload: null,
        },
      ],
    });
    expect(quickReply).toMatchObject({ kind: "text", text: "Red" });
    expect(quickReply?.payload).toMatchObject({
      attachments: [],
      quickReplyPayload: "DEVELOPER_DEFINED_PAYLOAD_FOR_PICKING_RED",
    });
    expect(replyTo).toMatchObject({ kind: "text", text: "answering" });
    expect(replyTo?.payload).toMatchObject({ replyToMid: "m_original", quickReplyPayload: null });
  });
});

describe("Instagram message details", () => {
  it("keeps a story reply, an unsupported message (flagged, no content) and an ad referral, and the API shows them", async () => {
    const account = "17841400000000901";
    const psid = "5310000000000901";
    const at = 1_761_287_294_000;
    const ig = { platform: "instagram" as const, conversationKey: conversationKey(account, psid) };
    const story = {
      ...events.message(account, psid, "ig_story_reply", at, "love this"),
      ...ig,
      replyToStory: { id: "17900000000000001", url: "https://lookaside.fbsbx.com/story.jpg" },
    };
    const unsupported = {
      ...events.message(account, psid, "ig_unsupported", at + 1),
      ...ig,
      text: null,
      unsupported: true,
    };
    const fromAd = {
      ...events.message(account, psid, "ig_from_ad", at + 2, "still available?"),
      ...ig,
      referral: { source: "ADS", ad_id: "120210000000000001" },
    };
    for (const event of [story, unsupported, fromAd]) await publishTwice(event as MessagingEvent);
    await world.settled();

    expect(await world.db.message.count({ where: { pageId: account } })).toBe(3);
    const conversation = await world.db.conversation.findFirstOrThrow({ where: { pageId: account } });
    const { data } = await listMessages(world.db, conversation.id, { limit: 10, order: "asc" });
    expect(data.map((m) => [m.mid, m.platform, m.text, m.unsupported, m.replyTo])).toEqual([
      [
        "ig_story_reply",
        "instagram",
        "love this",
        false,
        { mid: null, story: { id: "17900000000000001", url: "https://lookaside.fbsbx.com/story.jpg" } },
      ],
      ["ig_unsupported", "instagram", null, true, null],
      ["ig_from_ad", "instagram", "still available?", false, null],
    ]);
    expect(data[2]?.payload).toMatchObject({ referral: { source: "ADS", ad_id: "120210000000000001" } });
  });
});

describe("ordering", () => {
  it("reads a conversation back in Meta's timestamp order, mid breaking ties, whatever order it was stored in", async () => {
    const psid = "psid-order";
    const t = 1_700_000_000_000;
    const sequence = [
      events.echo(PAGE, psid, "m_order_4", t + 4_000),
      events.message(PAGE, psid, "m_order_3", t + 3_000),
      events.message(PAGE, psid, "m_order_2b", t + 2_000),
      events.message(PAGE, psid, "m_order_2a", t + 2_000),
      events.message(PAGE, psid, "m_order_1", t + 1_000),
    ];
    // One at a time, latest first: insertion order is the reverse of Meta's order.
    for (const event of sequence) {
      await world.publish(event);
      await world.settled();
    }

    const rows = await conversationMessages(world.db, PAGE, psid);
    expect(rows.map((r) => r.mid)).toEqual([
      "m_order_1",
      "m_order_2a",
      "m_order_2b",
      "m_order_3",
      "m_order_4",
    ]);
    expect([...rows].sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime())[0]?.mid).toBe("m_order_4");
    const conversation = await world.db.conversation.findFirstOrThrow({ where: { contact: { psid } } });
    expect(conversation.lastMessageAt?.getTime()).toBe(t + 4_000);
  });
});

describe("invalid events", () => {
  it("dead-letters an event the contracts reject at once with the reason, and stores nothing", async () => {
    const valid = events.message(PAGE, "psid-invalid", "m_invalid", Date.now());
    const { mid: _mid, ...withoutMid } = valid as Extract<MessagingEvent, { kind: "message" }>;
    const subject = world.bus.topology.subjects.messagingEvent(PAGE);
    const before = (await world.deadLetters()).length;
    await world.publish(withoutMid as MessagingEvent);
    await world.publish({ ...valid, kind: "poke" } as unknown as MessagingEvent, `${valid.eventId}:poke`);
    await publishRaw(world.bus.js, subject, "{not json", { msgId: `${valid.eventId}:bytes` });
    // Settled means terminated: a dead letter is not delivered to the service again.
    await world.settled();

    const letters = (await world.deadLetters()).slice(before);
    // Handled concurrently: dead-lettered in any order.
    expect(letters.map((l) => l.reason).sort()).toEqual([
      expect.stringMatching(/^invalid messaging event: kind: /),
      expect.stringMatching(/^invalid messaging event: mid: /),
      expect.stringMatching(/^undecodable messaging event: not JSON/),
    ]);
    for (const letter of letters) {
      expect(letter.headers[Headers.deliveries]).toBe("1");
      expect(letter.headers[Headers.stage]).toBe("message-service");
      expect(letter.headers[Headers.originalSubject]).toBe(subject);
    }
    expect(await world.db.contact.count({ where: { psid: "psid-invalid" } })).toBe(0);
    expect(await world.db.message.count({ where: { mid: "m_invalid" } })).toBe(0);
  });
});

describe("batches", () => {
  it("dead-letters an event the database refuses alone, with the reason, and stores its batch's other events", async () => {
    const t = Date.now();
    const before = (await world.deadLetters()).length;
    const good = Array.from({ length: 30 }, (_, i) =>
      events.message(PAGE, `psid-batch-${i % 6}`, `m_batch_${i}`, t + i),
    );
    // Valid to the contracts, refused by PostgreSQL (timestamp out of range): a poison message.
    const poison = events.message(PAGE, "psid-batch-0", "m_batch_poison", -1e15);
    await Promise.all([...good.slice(0, 15), poison, ...good.slice(15)].map((e) => world.publish(e)));
    await world.settled();

    const letters = (await world.deadLetters()).slice(before);
    expect(letters).toHaveLength(1);
    expect(letters[0]?.reason).toMatch(/^the database refused messaging event .*: .*out of range/i);
    expect(letters[0]?.headers[Headers.deliveries]).toBe("1");
    expect(JSON.parse(new TextDecoder().decode(letters[0]?.data)).mid).toBe("m_batch_poison");
    expect(await world.db.message.count({ where: { mid: { startsWith: "m_batch_" } } })).toBe(30);
    const batches = await service.registry.getSingleMetric("switchboard_message_batch_size")?.get();
    const count = batches?.values.find(
      (v) => (v as { metricName?: string }).metricName === "switchboard_message_batch_size_count",
    );
    expect(count?.value ?? 0).toBeGreaterThan(0);
  });
});

describe("domain events", () => {
  it("publishes nothing new when every event of a conversation is delivered again", async () => {
    const psid = "psid-domain";
    const t = 1_700_000_100_000;
    const first = [
      events.message(PAGE, psid, "m_domain_in", t),
      events.echo(PAGE, psid, "m_domain_out", t + 1_000),
      routed(
        {
          sender: { id: psid },
          recipient: { id: PAGE },
          timestamp: t + 1_500,
          postback: { mid: "m_domain_postback", title: "Menu", payload: "MENU" },
        },
        PAGE,
      ),
    ];
    const then = [
      events.delivery(PAGE, psid, t + 2_000),
      events.read(PAGE, psid, t + 3_000),
      events.reaction(PAGE, psid, "m_domain_out", t + 3_500, "react"),
      events.referral(PAGE, psid, t + 4_000),
    ];
    const { domain } = world.bus.topology.streams;
    const domainCount = async () =>
      (await listStored(world.bus.js, world.bus.jsm, domain.name, world.bus.topology.subjects.domainEvents))
        .length;
    const before = await domainCount();
    // The echo is stored before the watermarks arrive, so it moves to delivered, then read.
    for (const event of first) await world.publish(event);
    await world.settled();
    for (const event of then) await world.publish(event);
    await world.settled();

    const published = (await world.domainEvents()).filter((e) => e.psid === psid);
    expect(
      published.map((e) => (e.type === "message.status_changed" ? `${e.type}:${e.status}` : e.type)),
    ).toEqual([
      "conversation.created",
      "message.created",
      "message.created",
      "message.created",
      "message.status_changed:delivered",
      "message.status_changed:read",
    ]);
    const afterFirst = await domainCount();
    expect(afterFirst - before).toBe(published.length);

    for (const event of [...first, ...then]) await world.publish(event, `${event.eventId}:redelivered`);
    await world.settled();
    expect(await domainCount()).toBe(afterFirst);
    expect(await world.db.domainEventOutbox.count()).toBe(0);
    expect(await world.db.message.count({ where: { conversation: { contact: { psid } } } })).toBe(3);
  });
});

describe("conversation routing (messaging_handovers, standby)", () => {
  const page = "100200300400520";
  const owner = async (psid: string) =>
    (
      await world.db.conversation.findFirstOrThrow({
        where: { pageId: page, contact: { psid } },
      })
    ).threadOwnerAppId;
  const changes = async (psid: string) =>
    (await world.domainEvents()).filter(
      (e) => e.type === "conversation.thread_owner_changed" && e.psid === psid,
    );

  it("takes the thread to the Page inbox and passes it back, in Meta's order whatever order they arrive in; a request only recorded", async () => {
    const psid = "7300000000000001";
    const at = Date.now() - 60_000;
    await world.publish(events.message(page, psid, "m_route_1", at));
    await world.publish(events.threadControl(page, psid, "take", PAGE_INBOX_APP_ID, at + 1000));
    await world.settled();
    expect(await owner(psid)).toBe(PAGE_INBOX_APP_ID);
    await world.publish(events.threadControl(page, psid, "request", OUR_APP_ID, at + 1500));
    await world.publish(events.threadControl(page, psid, "pass", OUR_APP_ID, at + 2000));
    await world.settled();
    expect(await owner(psid)).toBe(OUR_APP_ID);
    // Meta's retry of the take arrives late: it is older than the pass, the thread stays ours.
    await world.publish(events.threadControl(page, psid, "take", PAGE_INBOX_APP_ID, at + 1000), null);
    await world.settled();
    expect(await owner(psid)).toBe(OUR_APP_ID);
    expect((await changes(psid)).map((e) => (e as { owner: string }).owner)).toEqual([
      "page_inbox",
      "switchboard",
    ]);
    const kept = await world.db.conversationEvent.findMany({
      where: { pageId: page, kind: "thread_control" },
    });
    expect(kept).toHaveLength(3);

    // The same two delivered in reverse order to another person: the last by Meta's time wins.
    const other = "7300000000000002";
    await world.publish(events.message(page, other, "m_route_2", at));
    await world.publish(events.threadControl(page, other, "pass", OUR_APP_ID, at + 2000));
    await world.settled();
    await world.publish(events.threadControl(page, other, "take", PAGE_INBOX_APP_ID, at + 1000));
    await world.settled();
    expect(await owner(other)).toBe(OUR_APP_ID);
  });

  it("stores a standby message as an ordinary incoming message marked as received on standby", async () => {
    const psid = "7300000000000003";
    await world.publish({ ...events.message(page, psid, "m_standby_1", Date.now()), standby: true });
    await world.settled();
    const row = await world.db.message.findFirstOrThrow({ where: { pageId: page, mid: "m_standby_1" } });
    expect(row).toMatchObject({ direction: "incoming", status: "received", receivedOnStandby: true });
  });
});

describe("policy enforcement (messaging_policy_enforcement)", () => {
  const page = "100200300400530";
  const status = async () =>
    (await world.db.pageConnection.findUniqueOrThrow({ where: { pageId: page } })).status;
  const lifecycle = async () =>
    (await listStored(world.bus.js, world.bus.jsm, world.bus.topology.streams.pages.name))
      .map(
        (m) =>
          JSON.parse(new TextDecoder().decode(m.data)) as {
            type: string;
            pageId: string;
            status: string;
            reason: string;
          },
      )
      .filter((e) => e.pageId === page && e.type === "page.status_changed");

  it("blocks and unblocks the page in Meta's order, announces each move once, warns without a status change, and makes no contact", async () => {
    await world.db.pageConnection.create({
      data: { pageId: page, companyId: "company-1", name: "Policy page", pageAccessTokenEnc: "x" },
    });
    const at = Date.now() - 60_000;
    await world.publish(events.policy(page, "warning", at, "too many messages"));
    await world.settled();
    expect(await status()).toBe("active");
    await world.publish(events.policy(page, "block", at + 1000, "The bot violated our Platform Policies."));
    await world.settled();
    expect(await world.db.pageConnection.findUniqueOrThrow({ where: { pageId: page } })).toMatchObject({
      status: "blocked",
      statusReason: "blocked by Meta: The bot violated our Platform Policies.",
      policyAction: "block",
    });
    // Meta's retry changes nothing and announces nothing.
    await world.publish(
      events.policy(page, "block", at + 1000, "The bot violated our Platform Policies."),
      null,
    );
    await world.publish(events.policy(page, "unblock", at + 2000));
    await world.settled();
    expect(await status()).toBe("active");
    // A block older than the unblock, arriving late, is kept but does not block again.
    await world.publish(events.policy(page, "block", at + 1500));
    await world.settled();
    expect(await status()).toBe("active");
    expect((await lifecycle()).map((e) => e.status)).toEqual(["blocked", "active"]);
    expect((await lifecycle())[0]!.reason).toBe("blocked by Meta: The bot violated our Platform Policies.");
    expect(await world.db.pagePolicyEvent.count({ where: { pageId: page } })).toBe(4);
    expect(await world.db.contact.count({ where: { pageId: page } })).toBe(0);
  });
});

describe("account linking and marketing-message opt-ins", () => {
  const page = "100200300400540";
  const base = (psid: string, timestamp: number) => ({
    eventId: `${page}:${psid}:${timestamp}`,
    pageId: page,
    companyId: "company-1",
    platform: "messenger" as const,
    standby: false,
    psid,
    conversationKey: conversationKey(page, psid),
    timestamp,
    traceId: "trace",
    receivedAt: timestamp,
  });

  it("links, then unlinks (the code cleared), the latest by Meta's time winning", async () => {
    const psid = "7400000000000001";
    const at = Date.now() - 60_000;
    const link = (status: "linked" | "unlinked", timestamp: number): MessagingEvent => ({
      ...base(psid, timestamp),
      eventId: `${page}:account_linking:${psid}:${timestamp}`,
      raw: { account_linking: { status } },
      kind: "account_linking",
      status,
      authorizationCode: status === "linked" ? "auth-code-1" : null,
    });
    await world.publish(link("linked", at));
    await world.settled();
    const contact = () => world.db.contact.findFirstOrThrow({ where: { pageId: page, psid } });
    expect(await contact()).toMatchObject({ accountLinkStatus: "linked", accountLinkCode: "auth-code-1" });
    await world.publish(link("unlinked", at + 1000));
    await world.publish(link("linked", at + 500));
    await world.settled();
    expect(await contact()).toMatchObject({ accountLinkStatus: "unlinked", accountLinkCode: null });
  });

  it("keeps a notification-messages token encrypted per topic, never in the clear, and follows stop and resume", async () => {
    const psid = "7400000000000002";
    const at = Date.now() - 60_000;
    const token = "notif-token-SECRET-42";
    const optin = (status: string | undefined, timestamp: number): MessagingEvent => {
      const body = {
        type: "notification_messages",
        payload: "weekly-deals",
        notification_messages_token: token,
        notification_messages_frequency: "WEEKLY",
        notification_messages_timezone: "Europe/Paris",
        token_expiry_timestamp: timestamp + 86_400_000,
        user_token_status: "NOT_REFRESHED",
        ...(status ? { notification_messages_status: status } : {}),
      };
      return { ...base(psid, timestamp), raw: { optin: body }, kind: "optin", optin: body };
    };
    await world.publish(optin(undefined, at));
    await world.settled();
    const row = await world.db.contactNotificationToken.findFirstOrThrow({ where: { pageId: page, psid } });
    expect(row).toMatchObject({ topic: "weekly-deals", status: "RESUME_NOTIFICATIONS", frequency: "WEEKLY" });
    expect(row.tokenEnc).not.toContain(token);
    expect(
      TEST_CIPHER.decrypt(row.tokenEnc!, { context: `notification-token:${page}:${psid}:weekly-deals` }),
    ).toBe(token);
    const kept = await world.db.conversationEvent.findMany({ where: { pageId: page, kind: "optin" } });
    expect(JSON.stringify(kept)).not.toContain(token);

    await world.publish(optin("STOP_NOTIFICATIONS", at + 1000));
    await world.publish(optin("RESUME_NOTIFICATIONS", at + 500));
    await world.settled();
    expect(
      (await world.db.contactNotificationToken.findFirstOrThrow({ where: { pageId: page, psid } })).status,
    ).toBe("STOP_NOTIFICATIONS");
  });
});
