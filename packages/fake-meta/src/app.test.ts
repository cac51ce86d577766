import { createHmac } from "node:crypto";
import { quoteLongIds, WebhookBody, webhookSignature } from "@switchboard/contracts";
import { eventually } from "@switchboard/testing";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createFakeMeta, fakeMetaControl, type RunningFakeMeta } from "./index";
import { createReceiver } from "./test-receiver";
import { metaJson, RawNumber } from "./webhooks";

const APP_SECRET = "fake-meta-test-secret";
const APP_ID = "1234567890123456789"; // beyond 2^53: must arrive as exact digits
const PAGE = "200000000000001";
const OTHER_PAGE = "200000000000002";
const TOKEN = "page-token-one";
const OTHER_TOKEN = "page-token-two";
const PSID = "8000000000001";
const CONTROL_TOKEN = "fake-meta-test-control-token";

/** What the tests read from Graph answers and the control API (an error body, or the fields of a success). */
interface Answer {
  error: { code?: number; error_subcode?: number; message: string; type?: string };
  subscribed: boolean;
  status: number;
  [field: string]: unknown;
}

const receiver = createReceiver();
let fake: ReturnType<typeof createFakeMeta>;
let server: RunningFakeMeta;

function proof(token: string, secret = APP_SECRET) {
  return createHmac("sha256", secret).update(token).digest("hex");
}

async function graph(method: string, path: string, token: string | undefined, body?: unknown) {
  const url = new URL(`${server.url}${path}`);
  if (token) url.searchParams.set("appsecret_proof", proof(token));
  const response = await fetch(url, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body ? { "content-type": "application/json" } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  receiver.state.answered = true;
  return { status: response.status, headers: response.headers, json: (await response.json()) as Answer };
}

async function control(method: string, path: string, body?: unknown) {
  const response = await fakeMetaControl(server.url, CONTROL_TOKEN)(path, body, method);
  return { status: response.status, json: (await response.json()) as Answer };
}

const send = (text: string, metadata?: string) =>
  graph("POST", `/v21.0/${PAGE}/messages`, TOKEN, {
    recipient: { id: PSID },
    messaging_type: "RESPONSE",
    message: { text, ...(metadata ? { metadata } : {}) },
  });

beforeAll(async () => {
  const ingressUrl = await receiver.start();
  fake = createFakeMeta({
    appSecret: APP_SECRET,
    appId: APP_ID,
    ingressUrl,
    graphApiVersion: "v21.0",
    controlToken: CONTROL_TOKEN,
  });
  server = await fake.listen();
});
afterAll(async () => {
  receiver.release();
  await server.close();
  await receiver.close();
});
beforeEach(() => {
  fake.state.reset();
  receiver.received.length = 0;
  receiver.state.answered = false;
  fake.state.addPage({ pageId: PAGE, token: TOKEN });
  fake.state.addPage({ pageId: OTHER_PAGE, token: OTHER_TOKEN });
  fake.state.addUser({ pageId: PAGE, psid: PSID, firstName: "Grace", lastName: "Hopper", profilePic: "pic" });
});

describe("webhooks", () => {
  it("signs the exact bytes it sends, escaped the way Meta escapes them", async () => {
    const text = "héllo 👋 https://example.com/a";
    const result = await fake.sendWebhook([
      {
        pageId: PAGE,
        messaging: [
          { sender: { id: PSID }, recipient: { id: PAGE }, timestamp: 1, message: { mid: "m1", text } },
        ],
      },
    ]);
    expect(result.status).toBe(200);
    const [delivery] = receiver.received;
    expect(delivery!.headers["x-hub-signature-256"]).toBe(webhookSignature(delivery!.raw, APP_SECRET));
    expect(delivery!.headers["x-hub-signature"]).toBe(
      `sha1=${createHmac("sha1", APP_SECRET).update(delivery!.raw).digest("hex")}`,
    );
    expect(delivery!.raw).toContain("h\\u00e9llo \\ud83d\\udc4b https:\\/\\/example.com\\/a");
    const body = WebhookBody.parse(JSON.parse(delivery!.raw));
    expect(body.entry[0]!.id).toBe(PAGE);
    expect((body.entry[0] as unknown as { messaging: unknown[] }).messaging[0]).toMatchObject({
      message: { text },
    });
    // Re-serialising gives other bytes, hence another signature: receivers must verify the raw body.
    expect(webhookSignature(JSON.stringify(JSON.parse(delivery!.raw)), APP_SECRET)).not.toBe(
      delivery!.headers["x-hub-signature-256"],
    );
  });

  it("a bad signature does not verify", async () => {
    await fake.sendWebhook({ object: "page", entry: [] }, { badSignature: true });
    const [delivery] = receiver.received;
    expect(delivery!.headers["x-hub-signature-256"]).not.toBe(webhookSignature(delivery!.raw, APP_SECRET));
  });

  it("sends a string body byte for byte", async () => {
    const raw = '{"object":"page","entry":[]}';
    await fake.sendWebhook(raw, { signWith: "another-secret" });
    expect(receiver.received[0]!.raw).toBe(raw);
    expect(receiver.received[0]!.headers["x-hub-signature-256"]).toBe(
      webhookSignature(raw, "another-secret"),
    );
  });

  it("metaJson escapes like Meta and writes long ids as bare numbers", () => {
    expect(metaJson({ a: "/", b: "é", app_id: new RawNumber(APP_ID) })).toBe(
      `{"a":"\\/","b":"\\u00e9","app_id":${APP_ID}}`,
    );
  });
});

describe("Send API echoes", () => {
  it("answers with a mid and echoes it with app_id and our metadata", async () => {
    fake.state.echoMode = "after";
    const { status, json } = await send("hello", "sb:msg-1");
    expect(status).toBe(200);
    expect(json.recipient_id).toBe(PSID);
    expect(json.message_id).toMatch(/^m_/);
    const echo = await eventually(() => receiver.received[0]);
    expect(echo.headers["x-hub-signature-256"]).toBe(webhookSignature(echo.raw, APP_SECRET));
    expect(echo.raw).toContain(`"app_id":${APP_ID}`);
    const body = WebhookBody.parse(JSON.parse(quoteLongIds(echo.raw)));
    const item = (body.entry[0] as unknown as { messaging: unknown[] }).messaging[0] as {
      sender: { id: string };
      recipient: { id: string };
      message: unknown;
    };
    expect(item.sender.id).toBe(PAGE);
    expect(item.recipient.id).toBe(PSID);
    expect(item.message).toMatchObject({
      is_echo: true,
      app_id: APP_ID,
      mid: json.message_id,
      metadata: "sb:msg-1",
      text: "hello",
    });
  });

  it("before: the echo is delivered before the Send API answers", async () => {
    fake.state.echoMode = "before";
    receiver.hold();
    let answered = false;
    const sending = send("first").then((r) => {
      answered = true;
      return r;
    });
    await eventually(() => receiver.received.length === 1);
    expect(answered).toBe(false);
    receiver.release();
    const { json } = await sending;
    expect(receiver.received[0]!.answeredAtArrival).toBe(false);
    expect(receiver.received[0]!.raw).toContain(json.message_id);
  });

  it("after: the Send API answers without waiting for the echo", async () => {
    fake.state.echoMode = "after";
    receiver.hold();
    const { json } = await send("second");
    const echo = await eventually(() => receiver.received[0]);
    receiver.release();
    expect(echo.answeredAtArrival).toBe(true);
    expect(echo.raw).toContain(json.message_id);
  });

  it("off: no echo", async () => {
    fake.state.echoMode = "off";
    await send("quiet");
    await fake.sendWebhook({ object: "page", entry: [] });
    expect(receiver.received.map((r) => r.raw)).toEqual(['{"object":"page","entry":[]}']);
    expect(fake.state.sentMessages).toHaveLength(1);
  });

  it("validates recipient, messaging_type and message like Meta", async () => {
    fake.state.echoMode = "off";
    const post = (body: unknown) => graph("POST", `/v21.0/${PAGE}/messages`, TOKEN, body);
    const noType = await post({ recipient: { id: PSID }, message: { text: "x" } });
    expect(noType.json.error.code).toBe(100);
    const noTag = await post({
      recipient: { id: PSID },
      messaging_type: "MESSAGE_TAG",
      message: { text: "x" },
    });
    expect(noTag.json.error.code).toBe(100);
    const stranger = await post({
      recipient: { id: "123" },
      messaging_type: "RESPONSE",
      message: { text: "x" },
    });
    expect(stranger.json.error).toMatchObject({ code: 100, error_subcode: 2018001 });
    const empty = await post({ recipient: { id: PSID }, messaging_type: "RESPONSE", message: {} });
    expect(empty.status).toBe(400);
    expect(fake.state.sentMessages).toHaveLength(0);
  });
});

describe("Graph checks", () => {
  it("records each call with its token and whether appsecret_proof was valid", async () => {
    await graph("GET", `/v21.0/${PAGE}/subscribed_apps`, TOKEN);
    const url = new URL(`${server.url}/v21.0/${PAGE}/subscribed_apps`);
    url.searchParams.set("access_token", TOKEN);
    url.searchParams.set("appsecret_proof", proof(TOKEN, "wrong"));
    const response = await fetch(url);
    expect(response.status).toBe(400);
    expect(((await response.json()) as Answer).error.message).toMatch(/appsecret_proof/);
    expect(fake.state.calls.map((c) => [c.token, c.pageId, c.appsecretProofValid])).toEqual([
      [TOKEN, PAGE, true],
      [TOKEN, PAGE, false],
    ]);
  });

  it("a page's subscription needs that page's own token", async () => {
    const wrong = await graph(
      "POST",
      `/v21.0/${PAGE}/subscribed_apps?subscribed_fields=messages`,
      OTHER_TOKEN,
    );
    expect(wrong.status).toBe(403);
    expect(wrong.json.error.code).toBe(200);
    expect(fake.state.subscriptions(PAGE)).toBeUndefined();
    const right = await graph(
      "POST",
      `/v21.0/${PAGE}/subscribed_apps?subscribed_fields=messages,message_reads`,
      TOKEN,
    );
    expect(right.json).toEqual({ success: true });
    expect(fake.state.subscriptions(PAGE)).toEqual(["messages", "message_reads"]);
    expect(fake.state.subscriptions(OTHER_PAGE)).toBeUndefined();
  });

  it("refuses unknown subscription fields and missing tokens", async () => {
    const bad = await graph("POST", `/v21.0/${PAGE}/subscribed_apps?subscribed_fields=nope`, TOKEN);
    expect(bad.json.error.code).toBe(100);
    const anonymous = await graph("GET", `/v21.0/${PAGE}/subscribed_apps`, undefined);
    expect(anonymous.json.error.code).toBe(104);
  });

  it("revoked and replaced tokens fail with 190", async () => {
    fake.state.revokeToken(PAGE);
    const revoked = await graph("GET", `/v21.0/${PAGE}/subscribed_apps`, TOKEN);
    expect(revoked.json.error).toMatchObject({ code: 190, error_subcode: 460, type: "OAuthException" });
    fake.state.setToken(PAGE, "fresh-token");
    expect((await graph("GET", `/v21.0/${PAGE}/subscribed_apps`, "fresh-token")).status).toBe(200);
    expect((await graph("GET", `/v21.0/${PAGE}/subscribed_apps`, TOKEN)).json.error.code).toBe(190);
  });

  it("profiles are page-scoped", async () => {
    const ok = await graph("GET", `/v21.0/${PSID}?fields=first_name,last_name,profile_pic`, TOKEN);
    expect(ok.json).toEqual({ id: PSID, first_name: "Grace", last_name: "Hopper", profile_pic: "pic" });
    const other = await graph("GET", `/v21.0/${PSID}?fields=first_name`, OTHER_TOKEN);
    expect(other.json.error).toMatchObject({ code: 100, error_subcode: 33 });
  });

  it("injected errors hit the named page and endpoint, `times` times, with usage headers", async () => {
    fake.state.setUsage(PAGE, 42);
    fake.state.injectError(PAGE, { code: 613, times: 2, endpoint: "subscribed_apps:GET" });
    const first = await graph("GET", `/v21.0/${PAGE}/subscribed_apps`, TOKEN);
    expect(first.json.error.code).toBe(613);
    expect(JSON.parse(first.headers.get("x-page-usage")!)).toMatchObject({ call_count: 42 });
    expect(first.headers.get("x-business-use-case-usage")).toContain(PAGE);
    expect(
      (await graph("POST", `/v21.0/${PAGE}/subscribed_apps?subscribed_fields=messages`, TOKEN)).status,
    ).toBe(200);
    expect((await graph("GET", `/v21.0/${OTHER_PAGE}/subscribed_apps`, OTHER_TOKEN)).status).toBe(200);
    expect((await graph("GET", `/v21.0/${PAGE}/subscribed_apps`, TOKEN)).json.error.code).toBe(613);
    expect((await graph("GET", `/v21.0/${PAGE}/subscribed_apps`, TOKEN)).status).toBe(200);
  });

  it("refuses another Graph API version than the configured one", async () => {
    const response = await graph("GET", `/v19.0/${PAGE}/subscribed_apps`, TOKEN);
    expect(response.status).toBe(400);
    expect(response.json.error.message).toMatch(/Unknown path components/);
  });
});

describe("control API", () => {
  it("drives pages, users, errors, drift, calls, webhooks and reset over HTTP", async () => {
    fake.state.reset();
    expect((await control("POST", "/pages", { pageId: "300", token: "t300", name: "Shop" })).status).toBe(
      201,
    );
    expect((await control("POST", "/users", { pageId: "300", psid: "9001", firstName: "Al" })).status).toBe(
      201,
    );
    await graph("POST", "/v21.0/300/subscribed_apps?subscribed_fields=messages", "t300");
    expect((await control("GET", "/pages/300/subscription")).json).toEqual({
      pageId: "300",
      subscribed: true,
      fields: ["messages"],
    });
    await control("POST", "/pages/300/drop-subscription");
    expect((await control("GET", "/pages/300/subscription")).json.subscribed).toBe(false);

    await control("POST", "/pages/300/errors", { code: 190, times: 1 });
    expect((await graph("GET", "/v21.0/9001?fields=first_name", "t300")).json.error.code).toBe(190);
    expect((await graph("GET", "/v21.0/9001?fields=first_name", "t300")).json.first_name).toBe("Al");
    await control("POST", "/pages/300/revoke");
    expect((await graph("GET", "/v21.0/300/subscribed_apps", "t300")).json.error.code).toBe(190);

    const calls = (await control("GET", "/calls?pageId=300")).json as unknown as Array<{
      endpoint: string;
      token: string;
    }>;
    expect(calls.map((c: { endpoint: string; token: string }) => [c.endpoint, c.token])).toEqual([
      ["subscribed_apps", "t300"],
      ["profile", "t300"],
      ["profile", "t300"],
      ["subscribed_apps", "t300"],
    ]);

    const sent = await control("POST", "/webhooks", {
      entries: [
        {
          id: "300",
          time: 1,
          messaging: [{ sender: { id: "9001" }, recipient: { id: "300" }, timestamp: 1 }],
        },
      ],
    });
    expect(sent.json.status).toBe(200);
    const delivery = receiver.received.at(-1)!;
    expect(delivery.headers["x-hub-signature-256"]).toBe(webhookSignature(delivery.raw, APP_SECRET));
    await control("POST", "/webhooks?badSignature=true", { object: "page", entry: [] });
    const forged = receiver.received.at(-1)!;
    expect(forged.headers["x-hub-signature-256"]).not.toBe(webhookSignature(forged.raw, APP_SECRET));

    expect((await control("POST", "/echo-mode", { mode: "sideways" })).status).toBe(400);
    await control("POST", "/reset");
    expect(fake.state.calls).toHaveLength(0);
    expect(fake.state.page("300")).toBeUndefined();
  });

  it("answers 401 without the control token, so nobody else can sign webhooks or read page tokens", async () => {
    const attempts = [
      fetch(`${server.url}/_fake/calls`),
      fetch(`${server.url}/_fake/calls`, { headers: { authorization: "Bearer not-the-token" } }),
      fetch(`${server.url}/_fake/calls`, { headers: { authorization: CONTROL_TOKEN } }),
      fakeMetaControl(server.url, "wrong")("/webhooks", { object: "page", entry: [] }),
      fakeMetaControl(server.url, "wrong")("/pages", { pageId: "1", token: "stolen" }),
    ];
    for (const response of await Promise.all(attempts)) {
      expect(response.status).toBe(401);
      expect(response.headers.get("www-authenticate")).toMatch(/^Bearer /);
    }
    expect(receiver.received).toHaveLength(0);
    expect(fake.state.page("1")).toBeUndefined();
    expect((await control("GET", "/calls")).status).toBe(200);
  });

  it("generates a control token when none is given", () => {
    const a = createFakeMeta({ appSecret: APP_SECRET, appId: APP_ID, ingressUrl: "http://127.0.0.1:9" });
    const b = createFakeMeta({ appSecret: APP_SECRET, appId: APP_ID, ingressUrl: "http://127.0.0.1:9" });
    expect(a.controlToken.length).toBeGreaterThanOrEqual(32);
    expect(a.controlToken).not.toBe(b.controlToken);
  });

  it("serves /healthz", async () => {
    const response = await fetch(`${server.url}/healthz`);
    expect(await response.json()).toEqual({ status: "ok" });
  });
});

describe("Conversations API (GET /{page-id}/conversations?user_id=)", () => {
  const FIELDS = "messages{id,message,created_time,from,to}";
  const thread = (token: string, query: string, page = PAGE) =>
    graph("GET", `/v21.0/${page}/conversations?${query}`, token);

  it("shows the page's thread with the person, newest first, with what the page sent", async () => {
    fake.state.echoMode = "off";
    expect((await thread(TOKEN, `user_id=${PSID}&fields=${FIELDS}`)).json).toEqual({ data: [] });
    await fake.sendWebhook([
      {
        id: PAGE,
        messaging: [
          {
            sender: { id: PSID },
            recipient: { id: PAGE },
            timestamp: 1,
            message: { mid: "m_in", text: "hi" },
          },
        ],
      },
    ]);
    const first = await send("hello Grace", "sb:msg-1");
    const second = await send("anything else?");

    const { status, json } = await thread(TOKEN, `platform=messenger&user_id=${PSID}&fields=${FIELDS}`);
    expect(status).toBe(200);
    const [conversation] = json.data as Array<{
      id: string;
      messages: { data: Array<Record<string, unknown>> };
    }>;
    expect(conversation!.id).toMatch(/^t_\d+$/);
    const page = { name: `Page ${PAGE}`, email: `${PAGE}@facebook.com`, id: PAGE };
    const person = { name: "Grace Hopper", email: `${PSID}@facebook.com`, id: PSID };
    expect(conversation!.messages.data).toEqual([
      {
        id: second.json.message_id,
        message: "anything else?",
        created_time: expect.any(String),
        from: page,
        to: { data: [person] },
      },
      {
        id: first.json.message_id,
        message: "hello Grace",
        created_time: expect.any(String),
        from: page,
        to: { data: [person] },
      },
      { id: "m_in", message: "hi", created_time: expect.any(String), from: person, to: { data: [page] } },
    ]);
    // Meta's format, and no `metadata`: the Conversations API does not return it.
    expect(conversation!.messages.data[0]!.created_time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000$/);
    expect(JSON.stringify(json)).not.toContain("sb:msg-1");
    expect(fake.state.callsTo(PAGE, "conversations").map((c) => [c.psid, c.token])).toEqual([
      [PSID, TOKEN],
      [PSID, TOKEN],
    ]);
  });

  it("needs the page's own token and answers only for that page's people", async () => {
    fake.state.echoMode = "off";
    await send("hello");
    const wrongPage = await thread(OTHER_TOKEN, `user_id=${PSID}&fields=${FIELDS}`);
    expect(wrongPage.status).toBe(403);
    expect(wrongPage.json.error.code).toBe(200);
    expect((await thread(OTHER_TOKEN, `user_id=${PSID}&fields=${FIELDS}`, OTHER_PAGE)).json).toEqual({
      data: [],
    });
    expect((await thread("", `user_id=${PSID}`)).json.error.code).toBe(104);
    fake.state.revokeToken(PAGE);
    expect((await thread(TOKEN, `user_id=${PSID}&fields=${FIELDS}`)).json.error).toMatchObject({
      code: 190,
      error_subcode: 460,
    });
  });

  it("answers the requested fields only, ids and updated_time by default, and refuses unknown ones", async () => {
    fake.state.echoMode = "off";
    const sent = await send("hello");
    const plain = await thread(TOKEN, `user_id=${PSID}`);
    expect(plain.json.data).toEqual([{ id: expect.stringMatching(/^t_/), updated_time: expect.any(String) }]);
    const narrow = await thread(TOKEN, `user_id=${PSID}&fields=messages{message}`);
    expect(narrow.json.data).toEqual([
      { id: expect.any(String), messages: { data: [{ message: "hello", id: sent.json.message_id }] } },
    ]);
    expect((await thread(TOKEN, `user_id=${PSID}&fields=messages{metadata}`)).json.error.code).toBe(100);
    expect((await thread(TOKEN, `user_id=${PSID}&fields=participants`)).json.error.code).toBe(100);
    expect((await thread(TOKEN, `user_id=${PSID}&platform=instagram`)).json.error.code).toBe(100);
  });
});

describe("conversation routing", () => {
  it("moves a person's thread to Meta's inbox and back: signed take/pass_thread_control, and our sends refused with 10/2018300 meanwhile", async () => {
    const PAGE_INBOX = "263902037430900";
    const taken = await control("POST", `/pages/${PAGE}/thread-owner`, { psid: PSID, appId: PAGE_INBOX });
    expect(taken.status).toBe(200);
    expect(taken.json).toMatchObject({ status: 200, previousOwnerAppId: null });
    const item = (n: number) =>
      (JSON.parse(receiver.received[n]!.raw) as { object: string; entry: Array<{ messaging: unknown[] }> })
        .entry[0]!.messaging[0];
    expect(item(0)).toMatchObject({
      sender: { id: PSID },
      recipient: { id: PAGE },
      take_thread_control: { previous_owner_app_id: APP_ID, new_owner_app_id: PAGE_INBOX },
    });
    // Long app ids arrive as exact digits, as Meta writes them.
    expect(receiver.received[0]!.raw).toContain(`"new_owner_app_id":"${PAGE_INBOX}"`);

    const refused = await send("are you there?");
    expect(refused.status).toBe(400);
    expect(refused.json.error).toMatchObject({ code: 10, error_subcode: 2018300 });
    expect(fake.state.sentMessages).toHaveLength(0);

    await control("POST", `/pages/${PAGE}/thread-owner`, { psid: PSID, appId: APP_ID });
    expect(item(1)).toMatchObject({
      pass_thread_control: { previous_owner_app_id: PAGE_INBOX, new_owner_app_id: APP_ID },
    });
    expect((await send("back with you")).status).toBe(200);
    expect(fake.state.sentMessages).toHaveLength(1);
    // Another person's thread was never moved.
    expect(fake.state.threadOwner(PAGE, "8000000000999")).toBeUndefined();
  });
});
