import { createFakeMeta, type RunningFakeMeta } from "@switchboard/fake-meta";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  appSecretProof,
  BadRequestError,
  createGraphClient,
  type GraphApiError,
  type GraphCallRecord,
  type GraphClientOptions,
  InvalidTokenError,
  OutsideWindowError,
  PermissionError,
  RateLimitError,
  TransientGraphError,
  UnknownGraphError,
  UserUnavailableError,
} from "./index";

const APP_SECRET = "graph-api-test-secret";
// Distinctive tokens: any leak into an error or a call record is easy to find.
const TOKEN_A = "EAAG-page-a-SECRET-TOKEN-7f3c91";
const TOKEN_B = "EAAG-page-b-SECRET-TOKEN-2b8e44";
const PAGE_A = "100000000000111";
const PAGE_B = "100000000000222";
const PSID_A = "7000000000001";

const fake = createFakeMeta({
  appSecret: APP_SECRET,
  appId: "555000000000001",
  ingressUrl: "http://127.0.0.1:9/unused",
  graphApiVersion: "v21.0",
  echoMode: "off",
});
let server: RunningFakeMeta;
let records: GraphCallRecord[];

function client(overrides: Partial<GraphClientOptions> = {}) {
  return createGraphClient({
    baseUrl: server.url,
    version: "v21.0",
    appSecret: APP_SECRET,
    timeoutMs: 2_000,
    retryBaseDelayMs: 5,
    onCall: (call) => records.push(call),
    ...overrides,
  });
}

const text = (body: string) => ({
  recipient: { id: PSID_A },
  messaging_type: "RESPONSE" as const,
  message: { text: body },
});

async function failure(promise: Promise<unknown>): Promise<GraphApiError> {
  try {
    await promise;
  } catch (error) {
    return error as GraphApiError;
  }
  throw new Error("expected the call to fail");
}

function expectNoSecrets(value: unknown, token: string) {
  const proof = appSecretProof(token, APP_SECRET);
  const error = value as Error;
  for (const text of [error.message, error.stack ?? "", JSON.stringify(value), String(value)]) {
    expect(text).not.toContain(token);
    expect(text).not.toContain(proof);
  }
}

beforeAll(async () => {
  server = await fake.listen();
});
afterAll(async () => {
  await server.close();
});
beforeEach(() => {
  fake.state.reset();
  fake.state.echoMode = "off";
  fake.state.addPage({ pageId: PAGE_A, token: TOKEN_A, name: "Page A" });
  fake.state.addPage({ pageId: PAGE_B, token: TOKEN_B, name: "Page B" });
  fake.state.addUser({
    pageId: PAGE_A,
    psid: PSID_A,
    firstName: "Ada",
    lastName: "Lovelace",
    profilePic: "pic",
  });
  records = [];
});

describe("every call", () => {
  it("carries the page's own token and a valid appsecret_proof, on the explicit page id", async () => {
    const graph = client();
    const fields = ["messages", "message_echoes"];
    await graph.subscribeApp(PAGE_A, TOKEN_A, fields);
    await graph.subscribeApp(PAGE_B, TOKEN_B, ["messages"]);
    expect(await graph.getSubscribedApps(PAGE_A, TOKEN_A)).toEqual([
      { id: "555000000000001", name: "Switchboard", subscribed_fields: fields },
    ]);
    expect(await graph.getUserProfile(PSID_A, TOKEN_A)).toEqual({
      first_name: "Ada",
      last_name: "Lovelace",
      profile_pic: "pic",
    });
    const sent = await graph.sendMessage(PAGE_A, TOKEN_A, text("hi"));
    expect(sent.recipient_id).toBe(PSID_A);
    expect(sent.message_id).toMatch(/^m_/);
    expect(await graph.unsubscribeApp(PAGE_B, TOKEN_B)).toEqual({ success: true });

    expect(fake.state.subscriptions(PAGE_A)).toEqual(fields);
    expect(fake.state.subscriptions(PAGE_B)).toBeUndefined();
    const calls = fake.state.calls;
    expect(calls.map((c) => `${c.method} ${c.path}`)).toEqual([
      `POST /v21.0/${PAGE_A}/subscribed_apps`,
      `POST /v21.0/${PAGE_B}/subscribed_apps`,
      `GET /v21.0/${PAGE_A}/subscribed_apps`,
      `GET /v21.0/${PSID_A}`,
      `POST /v21.0/${PAGE_A}/messages`,
      `DELETE /v21.0/${PAGE_B}/subscribed_apps`,
    ]);
    for (const call of calls) {
      expect(call.appsecretProofValid).toBe(true);
      expect(call.token).toBe(call.pageId === PAGE_A ? TOKEN_A : TOKEN_B);
      expect(call.query.appsecret_proof).toBe(appSecretProof(call.token!, APP_SECRET));
    }
    expect(calls[3]!.query.fields).toBe("first_name,last_name,profile_pic");
    expect(calls[0]!.query.subscribed_fields).toBe("messages,message_echoes");
  });

  it("computes appsecret_proof as the hex HMAC-SHA256 of the token", () => {
    // Reference value from `echo -n token | openssl dgst -sha256 -hmac secret`.
    expect(appSecretProof("token", "secret")).toBe(
      "e941110e3d2bfe82621f0e3e1434730d7305d106c5f68c87165d0b27a4611a4a",
    );
  });

  it("refuses /me: subscriptions always name the page", async () => {
    await expect(client().subscribeApp("me", TOKEN_A, ["messages"])).rejects.toThrow(/explicit page id/);
    expect(fake.state.calls).toHaveLength(0);
  });

  it("reports each attempt to onCall without ids in the endpoint and without the token", async () => {
    fake.state.setUsage(PAGE_A, 87);
    await client().getSubscribedApps(PAGE_A, TOKEN_A);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({
      endpoint: "subscribed_apps:GET",
      pageId: PAGE_A,
      outcome: "ok",
      status: 200,
      usage: { maxPercent: 87, pageUsage: { call_count: 87 } },
    });
    expect(JSON.stringify(records)).not.toContain(TOKEN_A);
  });
});

describe("errors from Meta", () => {
  const cases: Array<{
    name: string;
    inject: Parameters<typeof fake.state.injectError>[1];
    type: new (...args: never[]) => GraphApiError;
    kind: string;
    retryable: boolean;
  }> = [
    {
      name: "190 expired token",
      inject: { code: 190, subcode: 463 },
      type: InvalidTokenError,
      kind: "invalid_token",
      retryable: false,
    },
    {
      name: "10 permission",
      inject: { code: 10 },
      type: PermissionError,
      kind: "permission",
      retryable: false,
    },
    {
      name: "230 pages_messaging missing",
      inject: { code: 230 },
      type: PermissionError,
      kind: "permission",
      retryable: false,
    },
    {
      name: "4 app rate limit",
      inject: { code: 4 },
      type: RateLimitError,
      kind: "rate_limit",
      retryable: true,
    },
    {
      name: "17 user rate limit",
      inject: { code: 17 },
      type: RateLimitError,
      kind: "rate_limit",
      retryable: true,
    },
    {
      name: "32 page rate limit",
      inject: { code: 32 },
      type: RateLimitError,
      kind: "rate_limit",
      retryable: true,
    },
    {
      name: "613 rate limit",
      inject: { code: 613 },
      type: RateLimitError,
      kind: "rate_limit",
      retryable: true,
    },
    {
      name: "80006 messenger BUC limit",
      inject: { code: 80006 },
      type: RateLimitError,
      kind: "rate_limit",
      retryable: true,
    },
    {
      name: "2 service unavailable",
      inject: { code: 2 },
      type: TransientGraphError,
      kind: "transient",
      retryable: true,
    },
    {
      name: "1 unknown api error",
      inject: { code: 1 },
      type: TransientGraphError,
      kind: "transient",
      retryable: true,
    },
    {
      name: "bare HTTP 500",
      inject: { status: 500 },
      type: TransientGraphError,
      kind: "transient",
      retryable: true,
    },
    {
      name: "HTML 502 from a proxy",
      inject: { htmlBody: true, status: 502 },
      type: TransientGraphError,
      kind: "transient",
      retryable: true,
    },
    {
      name: "551 user unavailable",
      inject: { code: 551 },
      type: UserUnavailableError,
      kind: "user_unavailable",
      retryable: false,
    },
    {
      name: "200/1545041 user unavailable",
      inject: { code: 200, subcode: 1545041 },
      type: UserUnavailableError,
      kind: "user_unavailable",
      retryable: false,
    },
    {
      name: "10/2018278 outside window",
      inject: { code: 10, subcode: 2018278 },
      type: OutsideWindowError,
      kind: "outside_window",
      retryable: false,
    },
    {
      name: "10/2018065 outside window",
      inject: { code: 10, subcode: 2018065 },
      type: OutsideWindowError,
      kind: "outside_window",
      retryable: false,
    },
    {
      name: "100 bad parameter",
      inject: { code: 100 },
      type: BadRequestError,
      kind: "bad_request",
      retryable: false,
    },
    {
      name: "an unknown code",
      inject: { code: 12345 },
      type: UnknownGraphError,
      kind: "unknown",
      retryable: false,
    },
  ];

  it.each(cases)("$name → $kind, token absent from the error", async ({ inject, type, kind, retryable }) => {
    const proof = appSecretProof(TOKEN_A, APP_SECRET);
    // A Meta message quoting the token must not carry it into our error.
    const message = inject.htmlBody ? undefined : `Problem with ${TOKEN_A} and ${proof}`;
    fake.state.injectError(PAGE_A, { ...inject, ...(message ? { message } : {}) });
    const error = await failure(client({ maxRetries: 0 }).sendMessage(PAGE_A, TOKEN_A, text("x")));
    expect(error).toBeInstanceOf(type);
    expect(error.kind).toBe(kind);
    expect(error.retryable).toBe(retryable);
    expect(error.endpoint).toBe("messages:POST");
    if (inject.code !== undefined) {
      expect(error.code).toBe(inject.code);
      expect(error.fbtraceId).toBeTruthy();
    }
    if (inject.subcode !== undefined) expect(error.subcode).toBe(inject.subcode);
    expect(error.status).toBeGreaterThanOrEqual(400);
    expectNoSecrets(error, TOKEN_A);
    expect(records.at(-1)).toMatchObject({ endpoint: "messages:POST", outcome: kind });
  });

  it("a revoked token is an InvalidTokenError with Meta's subcode", async () => {
    fake.state.revokeToken(PAGE_A);
    const error = await failure(client().getSubscribedApps(PAGE_A, TOKEN_A));
    expect(error).toBeInstanceOf(InvalidTokenError);
    expect(error.subcode).toBe(460);
    expectNoSecrets(error, TOKEN_A);
  });

  it("another page's token is refused, and nothing is subscribed", async () => {
    const error = await failure(client().subscribeApp(PAGE_A, TOKEN_B, ["messages"]));
    expect(error).toBeInstanceOf(PermissionError);
    expect(fake.state.subscriptions(PAGE_A)).toBeUndefined();
    expectNoSecrets(error, TOKEN_B);
  });

  it("a wrong app secret gives an invalid appsecret_proof", async () => {
    const error = await failure(client({ appSecret: "not-the-secret" }).getSubscribedApps(PAGE_A, TOKEN_A));
    expect(error).toBeInstanceOf(BadRequestError);
    expect(error.message).toMatch(/appsecret_proof/);
    expect(fake.state.calls[0]!.appsecretProofValid).toBe(false);
  });

  it("an unknown or another page's PSID is a bad request (PSIDs are page-scoped)", async () => {
    const unknown = await failure(client().getUserProfile("999", TOKEN_A));
    expect(unknown).toBeInstanceOf(BadRequestError);
    expect(unknown.subcode).toBe(33);
    const otherPage = await failure(client().getUserProfile(PSID_A, TOKEN_B));
    expect(otherPage).toBeInstanceOf(BadRequestError);
  });

  it("a rate limit carries the usage headers and how long until access returns", async () => {
    fake.state.setUsage(PAGE_A, 100);
    fake.state.injectError(PAGE_A, { code: 32 });
    const error = await failure(client().getSubscribedApps(PAGE_A, TOKEN_A));
    expect(error).toBeInstanceOf(RateLimitError);
    expect(error.usage.maxPercent).toBe(100);
    expect((error as RateLimitError).retryAfterMs).toBe(5 * 60_000);
  });
});

describe("retries", () => {
  it("retries transient errors and succeeds", async () => {
    fake.state.injectError(PAGE_A, { code: 2, times: 2 });
    expect(await client({ maxRetries: 2 }).getSubscribedApps(PAGE_A, TOKEN_A)).toEqual([]);
    expect(fake.state.callsTo(PAGE_A)).toHaveLength(3);
    expect(records.map((r) => r.outcome)).toEqual(["transient", "transient", "ok"]);
  });

  it("gives up after maxRetries with the transient error", async () => {
    fake.state.injectError(PAGE_A, { status: 503 });
    const error = await failure(client({ maxRetries: 2 }).subscribeApp(PAGE_A, TOKEN_A, ["messages"]));
    expect(error).toBeInstanceOf(TransientGraphError);
    expect(fake.state.callsTo(PAGE_A)).toHaveLength(3);
  });

  it.each([{ code: 190 }, { code: 10 }, { code: 4 }, { code: 613 }, { code: 551 }, { code: 100 }])(
    "never retries code $code",
    async (inject) => {
      fake.state.injectError(PAGE_A, inject);
      await failure(client({ maxRetries: 3 }).subscribeApp(PAGE_A, TOKEN_A, ["messages"]));
      expect(fake.state.callsTo(PAGE_A)).toHaveLength(1);
    },
  );

  it("retries a send when Meta says the failure is temporary (code 1200)", async () => {
    fake.state.injectError(PAGE_A, { code: 1200, times: 1 });
    const sent = await client().sendMessage(PAGE_A, TOKEN_A, text("x"));
    expect(sent.message_id).toMatch(/^m_/);
    expect(fake.state.callsTo(PAGE_A, "messages")).toHaveLength(2);
    expect(fake.state.sentMessages).toHaveLength(1);
  });

  it("does not retry a send that Meta may have applied (5xx without a Graph error)", async () => {
    fake.state.injectError(PAGE_A, { htmlBody: true, status: 502, times: 1 });
    const error = await failure(client({ maxRetries: 3 }).sendMessage(PAGE_A, TOKEN_A, text("x")));
    expect(error).toBeInstanceOf(TransientGraphError);
    expect((error as TransientGraphError).requestMayHaveApplied).toBe(true);
    expect(fake.state.callsTo(PAGE_A, "messages")).toHaveLength(1);
  });
});

describe("timeouts and network errors", () => {
  it("times out a slow answer and retries an idempotent call", async () => {
    fake.state.injectError(PAGE_A, { delayMs: 600, times: 1 });
    const apps = await client({ timeoutMs: 150 }).getSubscribedApps(PAGE_A, TOKEN_A);
    expect(apps).toEqual([]);
    expect(fake.state.callsTo(PAGE_A)).toHaveLength(2);
    expect(records.map((r) => [r.outcome, r.status])).toEqual([
      ["transient", 0],
      ["ok", 200],
    ]);
  });

  it("a timed-out send is a TransientGraphError that may have been applied, and is not retried", async () => {
    fake.state.injectError(PAGE_A, { delayMs: 600 });
    const error = await failure(
      client({ timeoutMs: 150, maxRetries: 3 }).sendMessage(PAGE_A, TOKEN_A, text("x")),
    );
    expect(error).toBeInstanceOf(TransientGraphError);
    expect(error.message).toMatch(/no answer within 150 ms/);
    expect((error as TransientGraphError).requestMayHaveApplied).toBe(true);
    expect(fake.state.callsTo(PAGE_A, "messages")).toHaveLength(1);
    expectNoSecrets(error, TOKEN_A);
  });

  it("a refused connection never reached Meta: retried, even for a send", async () => {
    const closed = await createFakeMeta({
      appSecret: APP_SECRET,
      appId: "1",
      ingressUrl: "http://127.0.0.1:9",
    }).listen();
    await closed.close();
    const graph = createGraphClient({
      baseUrl: closed.url,
      version: "v21.0",
      appSecret: APP_SECRET,
      maxRetries: 2,
      retryBaseDelayMs: 1,
      onCall: (call) => records.push(call),
    });
    const error = await failure(graph.sendMessage(PAGE_A, TOKEN_A, text("x")));
    expect(error).toBeInstanceOf(TransientGraphError);
    expect((error as TransientGraphError).requestMayHaveApplied).toBe(false);
    expect(error.message).toMatch(/ECONNREFUSED/);
    expect(records).toHaveLength(3);
    expectNoSecrets(error, TOKEN_A);
  });
});

describe("Instagram accounts (the Instagram API with Instagram Login)", () => {
  const IG = "17841400000000777";
  const IG_TOKEN = "IGAA-account-SECRET-TOKEN-91ac";
  const IGSID = "6200000000000001";
  const instagram = (overrides: Partial<GraphClientOptions> = {}) =>
    client({ platform: "instagram", baseUrl: server.instagramUrl, ...overrides });

  beforeEach(() => {
    fake.state.addPage({ pageId: IG, token: IG_TOKEN, platform: "instagram" });
    fake.state.addUser({ pageId: IG, psid: IGSID, name: "Ada Lovelace", username: "ada" });
  });

  it("asks for an Instagram user's name, username and picture on the Instagram host", async () => {
    const profile = await instagram().getUserProfile(IGSID, IG_TOKEN, { pageId: IG });
    expect(profile).toMatchObject({ name: "Ada Lovelace", username: "ada" });
    const [call] = fake.state.callsTo(IG, "profile");
    expect(call).toMatchObject({ host: "instagram", token: IG_TOKEN, appsecretProofValid: true });
    expect(call!.query.fields).toBe("name,username,profile_pic");
  });

  it("sends, then finds the message in the account's thread with platform=instagram", async () => {
    const graph = instagram();
    const sent = await graph.sendMessage(IG, IG_TOKEN, { recipient: { id: IGSID }, message: { text: "hi" } });
    expect(typeof sent.message_id).toBe("string");
    const thread = await graph.getThreadMessages(IG, IG_TOKEN, IGSID);
    expect(thread.map((m) => m.id)).toContain(sent.message_id);
    expect(fake.state.callsTo(IG, "conversations")[0]).toMatchObject({
      host: "instagram",
      query: expect.objectContaining({ platform: "instagram", user_id: IGSID }),
    });
  });

  it("refreshes a long-lived token outside the versioned root, and never lets the token into an error", async () => {
    const graph = instagram();
    const refreshed = await graph.refreshInstagramToken(IG_TOKEN, { pageId: IG });
    expect(refreshed.expires_in).toBe(5_184_000);
    expect(refreshed.access_token).not.toBe(IG_TOKEN);
    // The new token works.
    await graph.getUserProfile(IGSID, refreshed.access_token, { pageId: IG });
    expect(fake.state.calls.find((c) => c.endpoint === "refresh_access_token")).toMatchObject({
      host: "instagram",
      path: "/refresh_access_token",
    });

    fake.state.revokeToken(IG);
    const error = await failure(graph.refreshInstagramToken(refreshed.access_token, { pageId: IG }));
    expect(error).toBeInstanceOf(InvalidTokenError);
    expectNoSecrets(error, refreshed.access_token);
    await expect(client().refreshInstagramToken(IG_TOKEN)).rejects.toThrow(/Instagram API call/);
  });

  it("a Page client calling an Instagram account fails loudly (the wrong host), never silently", async () => {
    const error = await failure(client().getUserProfile(IGSID, IG_TOKEN, { pageId: IG }));
    expect(error).toBeInstanceOf(InvalidTokenError);
  });
});
