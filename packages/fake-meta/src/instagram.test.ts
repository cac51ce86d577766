import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { webhookSignature } from "@switchboard/contracts";
import { eventually } from "@switchboard/testing";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { FakeMetaConfig } from "./config";
import {
  createFakeMeta,
  FakeMetaState,
  fakeMetaControl,
  INSTAGRAM_SUBSCRIBABLE_FIELDS,
  loadStateFile,
  persistState,
  type RunningFakeMeta,
} from "./index";
import { createReceiver } from "./test-receiver";

const APP_SECRET = "fake-meta-ig-test-secret";
const APP_ID = "1234567890123456789";
const IG_APP_ID = "987654321098765";
const IG = "17841400000000001";
const OTHER_IG = "17841400000000002";
const IG_TOKEN = "IGAAtoken-one";
const OTHER_IG_TOKEN = "IGAAtoken-two";
const IGSID = "9100000000000001";
const PAGE = "200000000000001";
const PAGE_TOKEN = "page-token-one";
const PSID = "8000000000001";
const CONTROL_TOKEN = "fake-meta-ig-test-control-token";
const UNPARSEABLE = "Invalid OAuth access token - Cannot parse access token";

interface Answer {
  error: { code?: number; error_subcode?: number; message: string; type?: string };
  [field: string]: unknown;
}

const receiver = createReceiver();
let fake: ReturnType<typeof createFakeMeta>;
let server: RunningFakeMeta;

const proof = (token: string) => createHmac("sha256", APP_SECRET).update(token).digest("hex");

/** A call to one host (`base`): the token as a Bearer header, with its appsecret_proof. */
async function call(base: string, method: string, path: string, token: string | undefined, body?: unknown) {
  const url = new URL(`${base}${path}`);
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

const ig = (method: string, path: string, token: string | undefined, body?: unknown) =>
  call(server.instagramUrl, method, path, token, body);
const fb = (method: string, path: string, token: string | undefined, body?: unknown) =>
  call(server.url, method, path, token, body);

async function control(method: string, path: string, body?: unknown) {
  const response = await fakeMetaControl(server.url, CONTROL_TOKEN)(path, body, method);
  return { status: response.status, json: (await response.json()) as Answer };
}

const sendIg = (message: Record<string, unknown>, token = IG_TOKEN) =>
  ig("POST", `/v21.0/${IG}/messages`, token, { recipient: { id: IGSID }, message });

/** `GET /refresh_access_token` as Meta documents it: the token in the query, no version. */
async function refresh(token: string, grantType = "ig_refresh_token") {
  const url = new URL(`${server.instagramUrl}/refresh_access_token`);
  url.searchParams.set("grant_type", grantType);
  url.searchParams.set("access_token", token);
  url.searchParams.set("appsecret_proof", proof(token));
  const response = await fetch(url);
  return { status: response.status, json: (await response.json()) as Answer };
}

beforeAll(async () => {
  const ingressUrl = await receiver.start();
  fake = createFakeMeta({
    appSecret: APP_SECRET,
    appId: APP_ID,
    instagramAppId: IG_APP_ID,
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
  fake.state.addPage({ pageId: IG, token: IG_TOKEN, platform: "instagram", username: "shop.ig" });
  fake.state.addPage({ pageId: OTHER_IG, token: OTHER_IG_TOKEN, platform: "instagram" });
  fake.state.addPage({ pageId: PAGE, token: PAGE_TOKEN });
  fake.state.addUser({ pageId: IG, psid: IGSID, name: "Ada Lovelace", username: "ada", profilePic: "pic" });
  fake.state.addUser({ pageId: PAGE, psid: PSID });
});

describe("Instagram subscriptions", () => {
  it("subscribes, verifies and unsubscribes with Instagram's fields, naming the Instagram app", async () => {
    const fields = "messages,message_reactions,messaging_seen,messaging_postbacks,messaging_referral";
    const subscribed = await ig("POST", `/v21.0/${IG}/subscribed_apps?subscribed_fields=${fields}`, IG_TOKEN);
    expect(subscribed.json).toEqual({ success: true });
    expect((await ig("GET", `/v21.0/${IG}/subscribed_apps`, IG_TOKEN)).json).toEqual({
      data: [{ id: IG_APP_ID, name: "Switchboard", subscribed_fields: fields.split(",") }],
    });
    expect((await ig("DELETE", `/v21.0/${IG}/subscribed_apps`, IG_TOKEN)).json).toEqual({ success: true });
    expect((await ig("GET", `/v21.0/${IG}/subscribed_apps`, IG_TOKEN)).json).toEqual({ data: [] });
    expect(fake.state.callsTo(IG, "subscribed_apps").map((c) => [c.host, c.method, c.token])).toEqual([
      ["instagram", "POST", IG_TOKEN],
      ["instagram", "GET", IG_TOKEN],
      ["instagram", "DELETE", IG_TOKEN],
      ["instagram", "GET", IG_TOKEN],
    ]);
  });

  it("refuses Messenger-only fields, another account's token, a bad proof and another version", async () => {
    for (const field of ["messaging_referrals", "message_echoes", "message_edits", "feed"]) {
      const refused = await ig("POST", `/v21.0/${IG}/subscribed_apps?subscribed_fields=${field}`, IG_TOKEN);
      expect(refused.json.error.code).toBe(100);
      expect(INSTAGRAM_SUBSCRIBABLE_FIELDS.has(field)).toBe(false);
    }
    const wrongAccount = await ig(
      "POST",
      `/v21.0/${IG}/subscribed_apps?subscribed_fields=messages`,
      OTHER_IG_TOKEN,
    );
    expect(wrongAccount.json.error.code).toBe(200);
    const badProof = await fetch(
      `${server.instagramUrl}/v21.0/${IG}/subscribed_apps?access_token=${IG_TOKEN}`,
    );
    expect(((await badProof.json()) as Answer).error.message).toMatch(/appsecret_proof/);
    expect((await ig("GET", `/v19.0/${IG}/subscribed_apps`, IG_TOKEN)).json.error.code).toBe(2500);
    expect(fake.state.subscriptions(IG)).toBeUndefined();
    expect(fake.state.calls.find((c) => c.query.access_token === IG_TOKEN)?.appsecretProofValid).toBe(false);
  });
});

describe("host separation", () => {
  it("the Facebook host cannot parse an Instagram account's token or id", async () => {
    fake.state.injectError(IG, { code: 613, times: 1 });
    const attempts = [
      await fb("GET", `/v21.0/${IG}/subscribed_apps`, IG_TOKEN),
      await fb("GET", `/v21.0/${IG}/subscribed_apps`, PAGE_TOKEN),
      await fb("POST", `/v21.0/${PAGE}/messages`, IG_TOKEN, {
        recipient: { id: PSID },
        messaging_type: "RESPONSE",
        message: { text: "x" },
      }),
      await fb("GET", `/v21.0/${IGSID}?fields=name`, IG_TOKEN),
      await fb("GET", `/v21.0/${IG}/conversations?platform=instagram&user_id=${IGSID}`, IG_TOKEN),
      await fb("GET", `/v21.0/me`, IG_TOKEN),
    ];
    for (const { status, json } of attempts) {
      expect(status).toBe(400);
      expect(json.error).toMatchObject({ code: 190, type: "OAuthException", message: UNPARSEABLE });
    }
    // The fault meant for the right host is still there; the wrong-host calls are recorded as such.
    expect((await ig("GET", `/v21.0/${IG}/subscribed_apps`, IG_TOKEN)).json.error.code).toBe(613);
    expect(fake.state.calls.slice(0, attempts.length).every((c) => c.host === "facebook")).toBe(true);
    expect(fake.state.sentMessages).toHaveLength(0);
  });

  it("the Instagram host cannot parse a Messenger page's token or id", async () => {
    const attempts = [
      await ig("GET", `/v21.0/${PAGE}/subscribed_apps`, PAGE_TOKEN),
      await ig("GET", `/v21.0/${IG}/subscribed_apps`, PAGE_TOKEN),
      await ig("POST", `/v21.0/${PAGE}/messages`, PAGE_TOKEN, {
        recipient: { id: PSID },
        message: { text: "x" },
      }),
      await ig("GET", `/v21.0/${PSID}?fields=name`, PAGE_TOKEN),
      await ig("GET", `/v21.0/me?fields=user_id`, PAGE_TOKEN),
      await refresh(PAGE_TOKEN),
    ];
    for (const { status, json } of attempts) {
      expect(status).toBe(400);
      expect(json.error).toMatchObject({ code: 190, message: UNPARSEABLE });
    }
    expect(fake.state.calls.every((c) => c.host === "instagram")).toBe(true);
    // Each host still serves its own.
    expect((await fb("GET", `/v21.0/${PAGE}/subscribed_apps`, PAGE_TOKEN)).status).toBe(200);
    expect((await ig("GET", `/v21.0/${IG}/subscribed_apps`, IG_TOKEN)).status).toBe(200);
  });

  it("answers unknown Instagram paths itself, never through the Facebook routes", async () => {
    const response = await ig("GET", "/nowhere", IG_TOKEN);
    expect(response.json.error.code).toBe(2500);
    expect(fake.state.calls).toHaveLength(0);
  });
});

describe("Instagram Send API", () => {
  it("answers an Instagram mid and echoes it as Instagram does: no app_id, no metadata", async () => {
    fake.state.echoMode = "after";
    const { status, json } = await sendIg({ text: "hello Ada", metadata: "sb:msg-1" });
    expect(status).toBe(200);
    expect(json).toEqual({
      recipient_id: IGSID,
      message_id: expect.stringMatching(/^aWdfZAG1f[A-Za-z0-9]+$/),
    });
    const echo = await eventually(() => receiver.received[0]);
    expect(echo.headers["x-hub-signature-256"]).toBe(webhookSignature(echo.raw, APP_SECRET));
    expect(echo.answeredAtArrival).toBe(true);
    expect(JSON.parse(echo.raw)).toEqual({
      object: "instagram",
      entry: [
        {
          id: IG,
          time: expect.any(Number),
          messaging: [
            {
              sender: { id: IG },
              recipient: { id: IGSID },
              timestamp: expect.any(Number),
              message: { mid: json.message_id, text: "hello Ada", is_echo: true },
            },
          ],
        },
      ],
    });
    expect(echo.raw).not.toContain("app_id");
    expect(echo.raw).not.toContain("sb:msg-1");
    expect(fake.state.sentMessages).toMatchObject([{ pageId: IG, psid: IGSID, mid: json.message_id }]);
  });

  it("sends image, video and audio attachments (echoed), refuses files, and gives every message its own mid", async () => {
    fake.state.echoMode = "before";
    const mids = new Set<string>();
    for (const type of ["image", "video", "audio"]) {
      const sent = await sendIg({ attachment: { type, payload: { url: `https://cdn.example/${type}` } } });
      expect(sent.status).toBe(200);
      mids.add(sent.json.message_id as string);
    }
    expect(mids.size).toBe(3);
    // `before`: each echo arrived before its answer.
    expect(receiver.received.map((r) => r.answeredAtArrival)).toEqual([false, true, true]);
    expect(JSON.parse(receiver.received[0]!.raw).entry[0].messaging[0].message).toEqual({
      mid: expect.any(String),
      attachments: [{ type: "image", payload: { url: "https://cdn.example/image" } }],
      is_echo: true,
    });
    const file = await sendIg({
      attachment: { type: "file", payload: { url: "https://cdn.example/a.pdf" } },
    });
    expect(file.json.error.code).toBe(100);
    expect((await sendIg({ attachment: { type: "image", payload: {} } })).json.error.code).toBe(100);
    expect((await sendIg({ text: "x".repeat(1001) })).json.error.code).toBe(100);
    expect(fake.state.sentMessages).toHaveLength(3);
  });

  it("validates the recipient and an optional messaging_type, and honours echo mode off", async () => {
    fake.state.echoMode = "off";
    const stranger = await ig("POST", `/v21.0/${IG}/messages`, IG_TOKEN, {
      recipient: { id: PSID },
      message: { text: "x" },
    });
    expect(stranger.json.error.code).toBe(100);
    const badType = await ig("POST", `/v21.0/${IG}/messages`, IG_TOKEN, {
      recipient: { id: IGSID },
      messaging_type: "SOMETIMES",
      message: { text: "x" },
    });
    expect(badType.json.error.code).toBe(100);
    const tagged = await ig("POST", `/v21.0/${IG}/messages`, IG_TOKEN, {
      recipient: { id: IGSID },
      messaging_type: "MESSAGE_TAG",
      tag: "HUMAN_AGENT",
      message: { text: "x" },
    });
    expect(tagged.status).toBe(200);
    expect(receiver.received).toHaveLength(0);
  });

  it("afterSending: the message is sent and echoed, the answer is lost", async () => {
    fake.state.echoMode = "before";
    fake.state.injectError(IG, { afterSending: true, status: 502, endpoint: "messages" });
    const lost = await sendIg({ text: "did it go?" });
    expect(lost.status).toBe(502);
    expect(fake.state.sentMessages).toHaveLength(1);
    const mid = fake.state.sentMessages[0]!.mid;
    expect(receiver.received[0]!.raw).toContain(mid);
    fake.state.clearErrors(IG);
    fake.state.injectError(IG, { afterSending: true, dropConnection: true, endpoint: "messages" });
    await expect(sendIg({ text: "and this one?" })).rejects.toThrow();
    expect(fake.state.sentMessages).toHaveLength(2);
  });
});

describe("Instagram Conversations API", () => {
  const FIELDS = "messages{id,message,created_time,from}";

  it("shows the account's thread with the person (platform=instagram), newest first", async () => {
    fake.state.echoMode = "off";
    const delivered = await control("POST", "/webhooks", {
      object: "instagram",
      entries: [
        {
          id: IG,
          time: 1,
          messaging: [
            {
              sender: { id: IGSID },
              recipient: { id: IG },
              timestamp: 1,
              message: { mid: "aWdfZAG1f-in", text: "hi" },
            },
          ],
        },
      ],
    });
    expect(delivered.json.status).toBe(200);
    expect(JSON.parse(receiver.received[0]!.raw).object).toBe("instagram");
    expect(fake.state.personMessages).toMatchObject([{ pageId: IG, psid: IGSID, mid: "aWdfZAG1f-in" }]);
    const reply = await sendIg({ text: "hello Ada" });

    const { status, json } = await ig(
      "GET",
      `/v21.0/${IG}/conversations?platform=instagram&user_id=${IGSID}&fields=${FIELDS}`,
      IG_TOKEN,
    );
    expect(status).toBe(200);
    const account = { username: "shop.ig", id: IG };
    const person = { username: "ada", id: IGSID };
    expect(json.data).toEqual([
      {
        id: expect.stringMatching(/^aWdfZAG06[A-Za-z0-9]+$/),
        messages: {
          data: [
            {
              id: reply.json.message_id,
              message: "hello Ada",
              created_time: expect.any(String),
              from: account,
            },
            { id: "aWdfZAG1f-in", message: "hi", created_time: expect.any(String), from: person },
          ],
        },
      },
    ]);
    expect(fake.state.callsTo(IG, "conversations").map((c) => [c.host, c.psid])).toEqual([
      ["instagram", IGSID],
    ]);
  });

  it("needs platform=instagram, the account's own token, and answers nothing for another's person", async () => {
    const path = (query: string) => `/v21.0/${IG}/conversations?user_id=${IGSID}${query}`;
    expect((await ig("GET", path(""), IG_TOKEN)).json.error.code).toBe(100);
    expect((await ig("GET", path("&platform=messenger"), IG_TOKEN)).json.error.code).toBe(100);
    expect((await ig("GET", path("&platform=instagram"), OTHER_IG_TOKEN)).json.error.code).toBe(200);
    const otherAccount = await ig(
      "GET",
      `/v21.0/${OTHER_IG}/conversations?platform=instagram&user_id=${IGSID}`,
      OTHER_IG_TOKEN,
    );
    expect(otherAccount.json).toEqual({ data: [] });
  });
});

describe("Instagram profiles and /me", () => {
  it("answers a person's name, username and picture to their account's token only", async () => {
    const profile = await ig("GET", `/v21.0/${IGSID}?fields=name,username,profile_pic`, IG_TOKEN);
    expect(profile.json).toEqual({ id: IGSID, name: "Ada Lovelace", username: "ada", profile_pic: "pic" });
    expect((await ig("GET", `/v21.0/${IGSID}?fields=first_name`, IG_TOKEN)).json.error.code).toBe(100);
    const other = await ig("GET", `/v21.0/${IGSID}?fields=name`, OTHER_IG_TOKEN);
    expect(other.json.error).toMatchObject({ code: 100, error_subcode: 33 });
    expect(fake.state.callsTo(IG, "profile")[0]).toMatchObject({ host: "instagram", psid: IGSID });
  });

  it("/me names the token's account", async () => {
    expect((await ig("GET", "/v21.0/me?fields=user_id,username", IG_TOKEN)).json).toEqual({
      user_id: IG,
      username: "shop.ig",
      id: IG,
    });
    expect((await ig("GET", "/v21.0/me?fields=user_id,username", OTHER_IG_TOKEN)).json).toMatchObject({
      user_id: OTHER_IG,
      username: `account_${OTHER_IG}`,
    });
    expect((await ig("GET", "/v21.0/me?fields=followers", IG_TOKEN)).json.error.code).toBe(100);
    expect((await ig("GET", "/v19.0/me?fields=user_id", IG_TOKEN)).json.error.code).toBe(2500);
  });
});

describe("GET /refresh_access_token", () => {
  it("issues a new working token for the account; the old one keeps working", async () => {
    const { status, json } = await refresh(IG_TOKEN);
    expect(status).toBe(200);
    expect(json).toEqual({ access_token: expect.any(String), token_type: "bearer", expires_in: 5184000 });
    const token = json.access_token as string;
    expect(token).not.toBe(IG_TOKEN);
    expect(token).toMatch(/^IGAA[A-Za-z0-9]+$/);
    expect(fake.state.page(IG)!.token).toBe(token);
    expect(fake.state.tokenInfo(token)).toEqual({ pageId: IG, status: "valid" });
    // Recorded like any call, and the new token appears nowhere in the log.
    expect(fake.state.calls).toMatchObject([
      {
        host: "instagram",
        endpoint: "refresh_access_token",
        pageId: IG,
        token: IG_TOKEN,
        appsecretProofValid: true,
      },
    ]);
    expect(JSON.stringify(fake.state.calls)).not.toContain(token);

    expect((await ig("GET", "/v21.0/me?fields=user_id", token)).json.user_id).toBe(IG);
    expect((await ig("GET", "/v21.0/me?fields=user_id", IG_TOKEN)).json.user_id).toBe(IG);
    const again = await refresh(token);
    expect(again.json.access_token).not.toBe(token);
  });

  it("refuses another grant_type (100), revoked and unknown tokens (190), and applies injected errors", async () => {
    expect((await refresh(IG_TOKEN, "fb_exchange_token")).json.error.code).toBe(100);
    expect((await refresh("IGAAnobody")).json.error).toMatchObject({ code: 190, message: UNPARSEABLE });

    fake.state.injectError(IG, { code: 2, times: 1, endpoint: "refresh_access_token" });
    const injected = await refresh(IG_TOKEN);
    expect(injected.status).toBe(503);
    expect(injected.json.error.code).toBe(2);
    const refreshed = (await refresh(IG_TOKEN)).json.access_token as string;

    fake.state.revokeToken(IG);
    for (const token of [IG_TOKEN, refreshed]) {
      expect((await refresh(token)).json.error).toMatchObject({ code: 190, error_subcode: 460 });
    }
  });
});

describe("Instagram accounts in the control API and the state file", () => {
  it("registers an Instagram account and its people over HTTP", async () => {
    fake.state.reset();
    const added = await control("POST", "/pages", {
      pageId: IG,
      token: IG_TOKEN,
      platform: "instagram",
      username: "shop.ig",
    });
    expect(added.status).toBe(201);
    expect(added.json).toMatchObject({ pageId: IG, platform: "instagram", username: "shop.ig" });
    expect((await control("POST", "/pages", { pageId: "1", token: "t", platform: "whatsapp" })).status).toBe(
      400,
    );
    await control("POST", "/pages", { pageId: PAGE, token: PAGE_TOKEN });
    const pages = (await control("GET", "/pages")).json as unknown as Array<{
      pageId: string;
      platform: string;
    }>;
    expect(pages.map((p) => [p.pageId, p.platform])).toEqual([
      [IG, "instagram"],
      [PAGE, "messenger"],
    ]);
    expect(
      (await control("POST", "/users", { pageId: IG, psid: IGSID, name: "Grace H", username: "grace" }))
        .status,
    ).toBe(201);
    expect(fake.state.user(IGSID)).toMatchObject({ name: "Grace H", username: "grace" });
  });

  it("sends a whole Instagram body as is", async () => {
    const body = { object: "instagram", entry: [{ id: IG, time: 1, messaging: [] }] };
    await control("POST", "/webhooks", body);
    expect(receiver.received[0]!.raw).toBe(JSON.stringify(body));
  });

  it("keeps platform and the Instagram fields across a restart; older files load as Messenger", () => {
    const dir = mkdtempSync(join(tmpdir(), "fake-meta-ig-"));
    try {
      const file = join(dir, "fake-meta.json");
      const before = new FakeMetaState();
      const saving = persistState(before, file);
      before.addPage({ pageId: IG, token: IG_TOKEN, platform: "instagram", username: "shop.ig" });
      before.addRefreshedToken(IG, "IGAArefreshed");
      before.addUser({ pageId: IG, psid: IGSID, name: "Ada Lovelace", username: "ada" });
      saving.close();
      const after = new FakeMetaState();
      persistState(after, file).close();
      expect(after.registrations()).toEqual(before.registrations());
      expect(after.page(IG)).toMatchObject({
        platform: "instagram",
        username: "shop.ig",
        token: "IGAArefreshed",
      });
      expect(after.tokenInfo(IG_TOKEN)).toEqual({ pageId: IG, status: "valid" });
      expect(after.user(IGSID)).toMatchObject({ name: "Ada Lovelace", username: "ada" });

      const old = join(dir, "old.json");
      writeFileSync(
        old,
        JSON.stringify({
          version: 1,
          pages: [{ pageId: "111", token: "t-111", name: "Shop", usagePercent: 0 }],
          tokens: [{ token: "t-111", pageId: "111", status: "valid" }],
          users: [{ pageId: "111", psid: "900", firstName: "Ada", lastName: "L", profilePic: "p" }],
        }),
      );
      const loaded = loadStateFile(old)!;
      expect(loaded.pages[0]).toMatchObject({ pageId: "111", platform: "messenger" });
      expect(loaded.users[0]).toMatchObject({ name: "Ada L", username: "user_900" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("INSTAGRAM_APP_ID", () => {
  it("is optional, digits only", () => {
    const base = { FB_APP_SECRET: "fake-meta-config-secret-0123456789", FB_APP_ID: APP_ID };
    expect(FakeMetaConfig.parse(base).INSTAGRAM_APP_ID).toBeUndefined();
    expect(FakeMetaConfig.parse({ ...base, INSTAGRAM_APP_ID: "" }).INSTAGRAM_APP_ID).toBeUndefined();
    expect(FakeMetaConfig.parse({ ...base, INSTAGRAM_APP_ID: IG_APP_ID }).INSTAGRAM_APP_ID).toBe(IG_APP_ID);
    expect(FakeMetaConfig.safeParse({ ...base, INSTAGRAM_APP_ID: "ig-app" }).success).toBe(false);
  });
});
