import { readFileSync } from "node:fs";
import { MessagingEvent, quoteLongIds, WebhookEntry } from "@switchboard/contracts";
import { describe, expect, it } from "vitest";
import { type EntryContext, normaliseEntry, normaliseItem } from "./normalise";

const PAGE = "404217156637689";
const USER = "1423587017700273";
const context: EntryContext = {
  pageId: PAGE,
  companyId: "acme",
  platform: "messenger",
  traceId: "trace-1",
  receivedAt: 1700000000999,
};
const T = 1700000000000;
const party = (sender: string, recipient: string) => ({
  sender: { id: sender },
  recipient: { id: recipient },
  timestamp: T,
});

/**
 * One item of each kind Meta documents for Messenger webhooks
 * (https://developers.facebook.com/docs/messenger-platform/webhooks and the reference page of each field),
 * in the wire shape.
 */
const documented = {
  text: { ...party(USER, PAGE), message: { mid: "m_text", text: "hello" } },
  quickReply: {
    ...party(USER, PAGE),
    message: { mid: "m_qr", text: "Red", quick_reply: { payload: "PICK_RED" } },
  },
  replyTo: {
    ...party(USER, PAGE),
    message: { mid: "m_reply", text: "this one", reply_to: { mid: "m_text" } },
  },
  attachments: {
    ...party(USER, PAGE),
    message: {
      mid: "m_attach",
      attachments: [
        { type: "image", payload: { url: "https://cdn.example/i.jpg" } },
        { type: "video", payload: { url: "https://cdn.example/v.mp4" } },
        { type: "audio", payload: { url: "https://cdn.example/a.mp3" } },
        { type: "file", payload: { url: "https://cdn.example/f.pdf" } },
        { type: "image", payload: { url: "https://cdn.example/s.png", sticker_id: 369239263222822 } },
        { type: "fallback", payload: { url: "https://example.com/article", title: "An article" } },
        {
          type: "template",
          payload: { product: { elements: [{ id: "p1", retailer_id: "r1", title: "Shoe" }] } },
        },
        {
          type: "ig_reel",
          payload: { url: "https://cdn.example/r.mp4", title: "A reel", reel_video_id: "77" },
        },
        { type: "location", payload: { coordinates: { lat: 1.5, long: 2.5 } }, title: "Pin" },
      ],
    },
  },
  echo: {
    ...party(PAGE, USER),
    message: {
      is_echo: true,
      app_id: "1517776481860111",
      metadata: "sb:msg-1",
      mid: "m_echo",
      text: "hi from page",
    },
  },
  echoFromInbox: {
    ...party(PAGE, USER),
    message: { is_echo: true, mid: "m_echo_inbox", text: "typed in inbox" },
  },
  postback: {
    ...party(USER, PAGE),
    postback: {
      mid: "m_postback",
      title: "Get Started",
      payload: "GET_STARTED",
      referral: { ref: "ad-7", source: "ADS", type: "OPEN_THREAD" },
    },
  },
  delivery: {
    sender: { id: USER },
    recipient: { id: PAGE },
    delivery: { mids: ["m_a", "m_b"], watermark: T - 5 },
  },
  read: { ...party(USER, PAGE), read: { watermark: T - 10 } },
  react: {
    ...party(USER, PAGE),
    reaction: { mid: "m_echo", action: "react", reaction: "love", emoji: "\u2764" },
  },
  unreact: {
    ...party(USER, PAGE),
    reaction: { mid: "m_echo", action: "unreact", reaction: "love", emoji: "\u2764" },
  },
  referral: { ...party(USER, PAGE), referral: { ref: "promo", source: "SHORTLINK", type: "OPEN_THREAD" } },
  optinCheckbox: { recipient: { id: PAGE }, timestamp: T, optin: { ref: "checkout", user_ref: "ref-abc" } },
  optinNotification: {
    ...party(USER, PAGE),
    optin: {
      type: "notification_messages",
      payload: "deals",
      notification_messages_token: "n-token",
      notification_messages_frequency: "WEEKLY",
    },
  },
  passThread: {
    ...party(USER, PAGE),
    pass_thread_control: { new_owner_app_id: "123", metadata: "to humans" },
  },
  takeThread: { ...party(USER, PAGE), take_thread_control: { previous_owner_app_id: "123", metadata: "" } },
  policy: {
    recipient: { id: PAGE },
    timestamp: T,
    "policy-enforcement": { action: "block", reason: "spam" },
  },
  accountLinking: { ...party(USER, PAGE), account_linking: { status: "linked", authorization_code: "code" } },
  gamePlay: { ...party(USER, PAGE), game_play: { game_id: "g1", player_id: "pl1", context_type: "SOLO" } },
  messageEdit: { ...party(USER, PAGE), message_edit: { mid: "m_text", text: "hello!", num_edit: 1 } },
};

describe("normaliseEntry", () => {
  const entry = WebhookEntry.parse({
    id: PAGE,
    time: T + 1,
    messaging: Object.values(documented),
    standby: [
      { ...party(USER, PAGE), message: { mid: "m_standby", text: "while another app owns the thread" } },
    ],
  });
  const events = normaliseEntry(entry, context);
  const byMid = (mid: string) => events.find((e) => "mid" in e && e.mid === mid);

  it("turns every documented item into one valid event, in order, with page, company and trace", () => {
    expect(events).toHaveLength(Object.keys(documented).length + 1);
    for (const event of events) {
      expect(MessagingEvent.safeParse(event).success).toBe(true);
      expect(event).toMatchObject({
        pageId: PAGE,
        companyId: "acme",
        traceId: "trace-1",
        receivedAt: context.receivedAt,
      });
    }
    expect(events.map((e) => e.kind)).toEqual([
      "message",
      "message",
      "message",
      "message",
      "echo",
      "echo",
      "postback",
      "delivery",
      "read",
      "reaction",
      "reaction",
      "referral",
      "optin",
      "optin",
      "thread_control",
      "thread_control",
      "policy_enforcement",
      "account_linking",
      "unsupported",
      "edit",
      "message",
    ]);
  });

  it("reads messages: text, quick reply, reply_to and attachments of every type", () => {
    expect(byMid("m_text")).toMatchObject({
      kind: "message",
      text: "hello",
      psid: USER,
      profileStatus: "not_requested",
    });
    expect(byMid("m_qr")).toMatchObject({ quickReplyPayload: "PICK_RED", text: "Red" });
    expect(byMid("m_reply")).toMatchObject({ replyToMid: "m_text" });
    const attachments = (byMid("m_attach") as Extract<MessagingEvent, { kind: "message" }>).attachments;
    expect(attachments.map((a) => a.type)).toEqual([
      "image",
      "video",
      "audio",
      "file",
      "image",
      "fallback",
      "template",
      "ig_reel",
      "location",
    ]);
    expect(attachments[0]!.url).toBe("https://cdn.example/i.jpg");
    expect(attachments[4]).toMatchObject({ stickerId: "369239263222822" });
    expect(attachments[5]).toMatchObject({ title: "An article", url: "https://example.com/article" });
    expect(attachments[6]!.payload).toEqual(documented.attachments.message.attachments[6]!.payload);
    expect(attachments[8]).toMatchObject({
      title: "Pin",
      url: null,
      payload: { coordinates: { lat: 1.5, long: 2.5 } },
    });
    expect(byMid("m_standby")).toMatchObject({ kind: "message", psid: USER });
  });

  it("reads echoes as the page's messages to the user, with app id and metadata", () => {
    expect(byMid("m_echo")).toMatchObject({
      kind: "echo",
      psid: USER,
      conversationKey: `${PAGE}:${USER}`,
      appId: "1517776481860111",
      metadata: "sb:msg-1",
      text: "hi from page",
      eventId: `${PAGE}:echo:m_echo`,
    });
    expect(byMid("m_echo_inbox")).toMatchObject({ kind: "echo", appId: null, metadata: null });
  });

  it("reads postbacks, deliveries, reads, reactions, referrals and opt-ins", () => {
    const [postback] = events.filter((e) => e.kind === "postback");
    expect(postback).toMatchObject({
      mid: "m_postback",
      title: "Get Started",
      payload: "GET_STARTED",
      referral: { ref: "ad-7", source: "ADS" },
    });
    // No timestamp on a delivery: the entry's time stands in.
    expect(events.find((e) => e.kind === "delivery")).toMatchObject({
      mids: ["m_a", "m_b"],
      watermark: T - 5,
      timestamp: T + 1,
    });
    expect(events.find((e) => e.kind === "read")).toMatchObject({ watermark: T - 10, timestamp: T });
    const reactions = events.filter((e) => e.kind === "reaction");
    expect(reactions).toMatchObject([
      { action: "react", reaction: "love", emoji: "\u2764", targetMid: "m_echo" },
      { action: "unreact", targetMid: "m_echo" },
    ]);
    expect(events.find((e) => e.kind === "referral")).toMatchObject({
      referral: { ref: "promo", source: "SHORTLINK" },
    });
    const optins = events.filter((e) => e.kind === "optin");
    expect(optins[0]).toMatchObject({ psid: "user_ref:ref-abc", optin: { ref: "checkout" } });
    expect(optins[1]).toMatchObject({ psid: USER, optin: { type: "notification_messages" } });
  });

  it("maps conversation routing, policy enforcement and account linking, and keeps game items whole as unsupported", () => {
    const routing = events.filter((e) => e.kind === "thread_control");
    expect(routing.map((e) => (e as { action: string }).action)).toEqual(["pass", "take"]);
    const policy = events.find((e) => e.kind === "policy_enforcement")!;
    expect(policy).toMatchObject({ psid: "unknown", raw: documented.policy });
    const unsupported = events.filter((e) => e.kind === "unsupported");
    expect(unsupported.map((e) => (e as { reason: string }).reason)).toEqual(["unmodelled item: game_play"]);
    expect(events.find((e) => e.kind === "account_linking")).toMatchObject({ status: "linked" });
  });

  it("keeps the app ids of a thread's owners exact, and marks standby items", () => {
    const [pass, onStandby] = normaliseEntry(
      {
        id: PAGE,
        time: T,
        standby: [
          {
            sender: { id: USER },
            recipient: { id: PAGE },
            timestamp: T,
            message: { mid: "m_sb", text: "hi" },
          },
        ],
        messaging: [
          {
            sender: { id: USER },
            recipient: { id: PAGE },
            timestamp: T,
            pass_thread_control: { new_owner_app_id: "1217981644879628123", previous_owner_app_id: null },
          },
        ],
      },
      context,
    ) as [MessagingEvent, MessagingEvent];
    expect(pass).toMatchObject({
      kind: "thread_control",
      action: "pass",
      newOwnerAppId: "1217981644879628123",
      previousOwnerAppId: null,
      standby: false,
    });
    expect(onStandby).toMatchObject({ kind: "message", mid: "m_sb", standby: true });
  });

  it("gives the same item the same event id every time, and different items different ids", () => {
    const again = normaliseEntry(entry, { ...context, traceId: "other", receivedAt: 1 });
    expect(again.map((e) => e.eventId)).toEqual(events.map((e) => e.eventId));
    expect(new Set(events.map((e) => e.eventId)).size).toBe(events.length);
  });

  it("keeps an item that breaks the schema as unsupported with the reason", () => {
    const event = normaliseItem({ sender: { id: USER }, message: { text: "no mid" } }, T, context);
    expect(event).toMatchObject({ kind: "unsupported", psid: USER, timestamp: T });
    expect((event as { reason: string }).reason).toMatch(/^item does not match Meta's schema: message\.mid/);
  });
});

describe("recorded peer payloads (fixtures/peer-webhooks.json)", () => {
  const fixtures = JSON.parse(
    quoteLongIds(
      readFileSync(
        new URL("../../../packages/contracts/fixtures/peer-webhooks.json", import.meta.url),
        "utf8",
      ),
    ),
  ) as Array<{ name: string; kind: string; messaging_event: Record<string, unknown> }>;
  const expected: Record<string, Partial<MessagingEvent> & Record<string, unknown>> = {
    "text-plain-legacy-mid-seq": {
      kind: "message",
      psid: "1423587017700273",
      text: "Sharp tools make good work.",
    },
    "text-quick-reply": { kind: "message", quickReplyPayload: "DEVELOPER_DEFINED_PAYLOAD_FOR_PICKING_RED" },
    "text-non-ascii-with-nlp-block": { kind: "message", text: "it is 26°C in here", psid: "987654321432" },
    "image-attachment-fbcdn-url": { kind: "message", text: null },
    "video-attachment-is-echo-false-bigint-app-id": { kind: "message", psid: "5" },
    "file-attachment": { kind: "message" },
    "sticker-like-button-legacy": { kind: "message" },
    "location-legacy-numeric-ids-real-capture": { kind: "message", psid: "975552755856163" },
    "fallback-legacy-payload-null-uppercase-URL": { kind: "message" },
    "postback-get-started-with-referral-and-title": {
      kind: "postback",
      payload: "__GET_STARTED__",
      title: "Get Started",
    },
    "postback-customer-chat-plugin-guest-user-ref": {
      kind: "postback",
      psid: "user_ref:987654321432",
      title: "",
    },
    "delivery-mids-watermark-no-timestamp": {
      kind: "delivery",
      psid: "1423587017700273",
      timestamp: 1458668856999,
    },
    "read-watermark-and-timestamp": { kind: "read", psid: "1423587017700273", watermark: 1458668856253 },
    "echo-app-sent-text-float-timestamps": {
      kind: "echo",
      psid: "1244813222196986",
      appId: "1821152484774199",
      timestamp: 1492414608982,
    },
    "reaction-react-sad-escaped-emoji": { kind: "reaction", emoji: "😢", reaction: "sad", psid: "USER_ID" },
    "reaction-unreact-no-emoji": { kind: "reaction", action: "unreact", emoji: null, reaction: null },
    "referral-mme-shortlink": { kind: "referral", psid: "1476077111119289" },
    "optin-checkbox-no-sender": { kind: "optin", psid: "user_ref:123-abc", timestamp: 1234567890000 },
    "batch-two-entries-same-timestamp": { kind: "message", text: "test 1" },
  };
  // The page is named by entry.id; in these captures that is the recipient, except where the page sent the item.
  const pageOf = (item: Record<string, unknown>) => {
    const sender = (item.sender as { id?: string } | undefined)?.id;
    const recipient = (item.recipient as { id?: string } | undefined)?.id;
    const message = item.message as { is_echo?: boolean } | undefined;
    const pageSent = message?.is_echo === true || "delivery" in item || "read" in item;
    return String((pageSent ? sender : recipient) ?? "12345");
  };

  it("covers every recorded fixture", () => {
    expect(Object.keys(expected).sort()).toEqual(fixtures.map((f) => f.name).sort());
  });

  it.each(fixtures.map((f) => [f.name, f] as const))("normalises %s", (name, fixture) => {
    const pageId = pageOf(fixture.messaging_event);
    const event = normaliseItem(fixture.messaging_event, 1458668856999, { ...context, pageId });
    expect(MessagingEvent.safeParse(event).success).toBe(true);
    expect(event).toMatchObject(expected[name]!);
    expect(event.conversationKey).toBe(`${pageId}:${event.psid}`);
    expect(event.raw).toEqual(fixture.messaging_event);
  });

  it("reads attachments of recorded payloads whatever their shape", () => {
    const find = (name: string) => fixtures.find((f) => f.name === name)!.messaging_event;
    const attachmentsOf = (name: string) =>
      (
        normaliseItem(find(name), 0, { ...context, pageId: pageOf(find(name)) }) as Extract<
          MessagingEvent,
          { kind: "message" }
        >
      ).attachments;
    expect(attachmentsOf("fallback-legacy-payload-null-uppercase-URL")[0]).toMatchObject({
      type: "fallback",
      url: "URL_OF_THE_ATTACHMENT",
      title: "TITLE_OF_THE_URL_ATTACHMENT",
      payload: null,
    });
    expect(attachmentsOf("sticker-like-button-legacy")[0]).toMatchObject({
      type: "image",
      stickerId: "369239263222822",
    });
    expect(attachmentsOf("location-legacy-numeric-ids-real-capture")[0]).toMatchObject({
      type: "location",
      title: "Simon's Location",
    });
    expect(attachmentsOf("video-attachment-is-echo-false-bigint-app-id")[0]).toMatchObject({
      type: "video",
      url: "https://www.example.com/2.mp4",
    });
  });
});

describe("message_edits and Instagram's seen", () => {
  it("makes a message_edit an edit event, one per revision (Meta's example sends num_edit as a string)", () => {
    const item = {
      ...party(USER, PAGE),
      message_edit: { mid: "m_text", text: "hello again", num_edit: "2" },
    };
    const event = MessagingEvent.parse(normaliseItem(item, T, context));
    expect(event).toMatchObject({ kind: "edit", mid: "m_text", text: "hello again", numEdit: 2, psid: USER });
    expect(event.eventId).toBe(`${PAGE}:edit:m_text:2`);
    const retried = normaliseItem(structuredClone(item), T, context);
    expect(retried.eventId).toBe(event.eventId);
    const next = normaliseItem({ ...item, message_edit: { ...item.message_edit, num_edit: 3 } }, T, context);
    expect(next.eventId).not.toBe(event.eventId);
  });

  it("makes Instagram's is_deleted an unsend of that mid, never a second message with it", () => {
    const event = normaliseItem(
      { ...party(USER, PAGE), message: { mid: "m_text", is_deleted: true } },
      T,
      context,
    );
    expect(MessagingEvent.parse(event)).toMatchObject({ kind: "unsend", mid: "m_text", psid: USER });
    expect(event.eventId).toBe(`${PAGE}:unsend:m_text`);
  });

  it("reads a seen that names a message (Instagram's messaging_seen) as read up to when it was seen", () => {
    const event = normaliseItem({ ...party(USER, PAGE), read: { mid: "m_text" } }, T, context);
    expect(event).toMatchObject({ kind: "read", watermark: T });
  });
});

describe("recorded Instagram payloads (fixtures/instagram-webhooks.json)", () => {
  const fixtures = JSON.parse(
    readFileSync(
      new URL("../../../packages/contracts/fixtures/instagram-webhooks.json", import.meta.url),
      "utf8",
    ),
  ) as Array<{
    name: string;
    messaging_event?: Record<string, unknown>;
    body?: { entry: Array<{ id: string; messaging: Array<Record<string, unknown>> }> };
  }>;
  const ig = { ...context, platform: "instagram" as const };
  const itemOf = (f: (typeof fixtures)[number]) => f.messaging_event ?? f.body!.entry[0]!.messaging[0]!;
  // The account is the recipient, except for what it sent (echoes) or saw being read.
  const accountOf = (item: Record<string, unknown>) => {
    const message = item.message as { is_echo?: boolean } | undefined;
    const side = message?.is_echo === true ? item.sender : item.recipient;
    return String((side as { id: string }).id);
  };
  const url = (t: string) => `https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1813${t}`;
  const expected: Record<string, Record<string, unknown>> = {
    "ig-text": { kind: "message", text: "MESSAGE-TEXT", psid: "1234567890123456" },
    "ig-story-reply": {
      kind: "message",
      text: "This is the story reply",
      replyToMid: null,
      replyToStory: { id: "chatwoot-app-user-id-1", url: "https://chatwoot-assets.local/sample.png" },
    },
    "ig-unsend": { kind: "unsend", mid: "message-id-to-delete" },
    "ig-story-mention": {
      kind: "message",
      attachments: [
        expect.objectContaining({ type: "story_mention", url: "https://www.example.com/test.jpeg" }),
      ],
    },
    "ig-seen": { kind: "read", watermark: 1631082844000 },
    "ig-post-share": { kind: "message", text: null },
    "ig-unsupported": { kind: "message", unsupported: true, text: null, attachments: [] },
    "ig-echo": { kind: "echo", text: "Thanks!", appId: null, psid: "1234567890123456" },
    "ig-attachment-image": {
      kind: "message",
      attachments: [expect.objectContaining({ type: "image", url: url("image") })],
    },
    "ig-attachment-video": {
      kind: "message",
      attachments: [expect.objectContaining({ type: "video", url: url("video") })],
    },
    "ig-attachment-audio": {
      kind: "message",
      attachments: [expect.objectContaining({ type: "audio", url: url("audio") })],
    },
    "ig-attachment-file": {
      kind: "message",
      attachments: [expect.objectContaining({ type: "file", url: url("file") })],
    },
    "ig-attachment-reel": {
      kind: "message",
      attachments: [expect.objectContaining({ type: "reel", url: url("reel"), title: "A reel caption" })],
    },
    "ig-attachment-ig-reel": {
      kind: "message",
      attachments: [
        expect.objectContaining({ type: "ig_reel", url: url("ig_reel"), title: "A reel caption" }),
      ],
    },
    "ig-attachment-ephemeral": {
      kind: "message",
      attachments: [expect.objectContaining({ type: "ephemeral", url: null })],
    },
    "ig-reply-to-message": {
      kind: "message",
      replyToMid: "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEimage",
      replyToStory: null,
    },
    "ig-quick-reply": { kind: "message", text: "Red", quickReplyPayload: "PICKED_RED" },
    "ig-message-referral-ad": {
      kind: "message",
      text: "Is this still available?",
      referral: expect.objectContaining({ ad_id: "120210000000000001", source: "ADS" }),
    },
    "ig-referral-igme-link": { kind: "referral", referral: expect.objectContaining({ source: "IGME_LINK" }) },
    "ig-postback": { kind: "postback", title: "Talk to a person", payload: "HUMAN" },
    "ig-reaction-react": {
      kind: "reaction",
      action: "react",
      emoji: "❤️",
      targetMid: "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEreply",
    },
    "ig-reaction-unreact": { kind: "reaction", action: "unreact", emoji: null },
  };

  it("covers every recorded fixture", () => {
    expect(Object.keys(expected).sort()).toEqual(fixtures.map((f) => f.name).sort());
  });

  it.each(fixtures.map((f) => [f.name, f] as const))(
    "normalises %s as an Instagram event",
    (name, fixture) => {
      const item = itemOf(fixture);
      const pageId = accountOf(item);
      const event = normaliseItem(item, 0, { ...ig, pageId });
      expect(MessagingEvent.safeParse(event).success).toBe(true);
      expect(event).toMatchObject({ platform: "instagram", ...expected[name] });
      expect(event.conversationKey).toBe(`${pageId}:${event.psid}`);
    },
  );

  it("flags nothing unsupported and no story on an ordinary message", () => {
    const event = normaliseItem(itemOf(fixtures.find((f) => f.name === "ig-quick-reply")!), 0, ig);
    expect(event).toMatchObject({ unsupported: false, replyToStory: null, referral: null });
  });
});
