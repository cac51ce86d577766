import { webhookSignature } from "@switchboard/contracts";
import { eventually } from "@switchboard/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type System, startSystem } from "./harness";

const P1 = { pageId: "503000000000001", name: "Acme Shoes", token: "EAAB-platforms-p1" };
const P2 = { pageId: "503000000000002", name: "Acme Hats", token: "EAAB-platforms-p2" };
const IG = { pageId: "17841403000000001", name: "Acme on Instagram", token: "IGAA-platforms-ig" };
const CHANNELS = [
  { ...P1, object: "page", platform: "messenger" },
  { ...P2, object: "page", platform: "messenger" },
  { ...IG, object: "instagram", platform: "instagram" },
] as const;
/** Two people per channel; their ids are scoped to the page or account, as Meta's PSIDs and IGSIDs are. */
const peopleOf = (pageId: string) => {
  const channel = [P1.pageId, P2.pageId, IG.pageId].indexOf(pageId) + 1;
  return [`703${channel}000000000001`, `703${channel}000000000002`];
};
const PEOPLE_PER_CHANNEL = 2;
const PER_PERSON = 3;

/**
 * One company with two Facebook Pages and an Instagram account, through the whole system as processes:
 * Meta's signed webhooks for all three at once (each POSTed twice, as Meta retries), Instagram's unsend,
 * reaction and seen, a Messenger edit, and a reply to each through /v1 — every row right and once, the
 * Instagram account called only on the Instagram host, nothing unrouted.
 */
describe("Pages and an Instagram account side by side", () => {
  let system: System;
  let apiKey: string;
  const api = (path: string, init: RequestInit = {}) =>
    fetch(`${system.urls["message-service"]}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json", ...init.headers },
    });
  const postFromMeta = async (object: string, pageId: string, messaging: unknown[]) => {
    const raw = JSON.stringify({ object, entry: [{ id: pageId, time: Date.now(), messaging }] });
    const res = await fetch(`${system.ingressUrl}/webhooks/facebook`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-hub-signature-256": webhookSignature(raw, system.appSecret),
      },
      body: raw,
    });
    expect(res.status).toBe(200);
  };
  const fromPerson = (
    pageId: string,
    psid: string,
    extra: Record<string, unknown>,
    timestamp = Date.now(),
  ) => ({
    sender: { id: psid },
    recipient: { id: pageId },
    timestamp,
    ...extra,
  });
  const midOf = (pageId: string, psid: string, n: number) => `m_${pageId.slice(-3)}_${psid.slice(-2)}_${n}`;

  beforeAll(async () => {
    system = await startSystem({ FAKE_META_ECHO_MODE: "random" });
    for (const channel of CHANNELS) {
      const registered = await system.fakeMeta("/pages", {
        pageId: channel.pageId,
        token: channel.token,
        name: channel.name,
        platform: channel.platform,
      });
      expect(registered.status).toBe(201);
      for (const psid of peopleOf(channel.pageId)) {
        await system.fakeMeta("/users", {
          pageId: channel.pageId,
          psid,
          firstName: "Ada",
          lastName: `of ${channel.name}`,
          name: `Ada of ${channel.name}`,
          username: `ada_${psid.slice(-2)}`,
        });
      }
      const connected = await system.cli(
        [
          "pages",
          "connect",
          "--page-id",
          channel.pageId,
          "--name",
          channel.name,
          "--company",
          "acme",
          "--platform",
          channel.platform,
        ],
        channel.token,
      );
      expect(connected.code, connected.stderr).toBe(0);
    }
    apiKey = (await system.cli(["api-keys", "create", "--company", "acme"])).stdout.trim();
  });

  afterAll(async () => {
    await system?.stop();
  });

  it("subscribes each on its own endpoint of its own host: the Pages on the Graph API, the account on the Instagram API", async () => {
    for (const channel of CHANNELS) {
      await eventually(
        async () =>
          (await system.db.pageSubscription.findUnique({ where: { pageId: channel.pageId } }))?.status ===
          "subscribed",
        { message: `${channel.name} subscribed` },
      );
      const calls = (await (await system.fakeMeta(`/calls?pageId=${channel.pageId}`)).json()) as Array<{
        host: string;
        path: string;
        token: string;
      }>;
      expect(calls.length).toBeGreaterThan(0);
      for (const call of calls) {
        expect(call.host).toBe(channel.platform === "instagram" ? "instagram" : "facebook");
        expect(call.token).toBe(channel.token);
        expect(call.path).not.toContain("/me/");
      }
    }
    const ig = await system.db.pageSubscription.findUniqueOrThrow({ where: { pageId: IG.pageId } });
    expect(ig.subscribedFields).toContain("messaging_seen");
    expect(ig.subscribedFields).not.toContain("message_echoes");
  });

  it("stores every message of all three once, with its platform, while each webhook arrives twice", async () => {
    const posts = CHANNELS.flatMap((channel) =>
      peopleOf(channel.pageId).map((psid, p) => {
        const items = Array.from({ length: PER_PERSON }, (_, n) =>
          fromPerson(
            channel.pageId,
            psid,
            { message: { mid: midOf(channel.pageId, psid, n), text: `${channel.platform} ${p} ${n}` } },
            Date.now() + n,
          ),
        );
        return async () => {
          await postFromMeta(channel.object, channel.pageId, items);
          await postFromMeta(channel.object, channel.pageId, items);
        };
      }),
    );
    await Promise.all(posts.map((post) => post()));

    const expected = CHANNELS.length * PEOPLE_PER_CHANNEL * PER_PERSON;
    await eventually(
      async () => (await system.db.message.count({ where: { direction: "incoming" } })) === expected,
      { message: `${expected} incoming messages stored` },
    );
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(await system.db.message.count({ where: { direction: "incoming" } })).toBe(expected);
    for (const channel of CHANNELS) {
      const rows = await system.db.message.findMany({
        where: { pageId: channel.pageId, direction: "incoming" },
      });
      expect(rows).toHaveLength(PEOPLE_PER_CHANNEL * PER_PERSON);
      expect(new Set(rows.map((r) => r.platform))).toEqual(new Set([channel.platform]));
      const conversations = await system.db.conversation.findMany({
        where: { pageId: channel.pageId },
        include: { contact: true },
      });
      expect(conversations).toHaveLength(PEOPLE_PER_CHANNEL);
      expect(conversations.every((c) => c.platform === channel.platform)).toBe(true);
      if (channel.platform === "instagram") {
        // Instagram profiles: a name and a username, from the Instagram host.
        expect(conversations[0]!.contact).toMatchObject({
          name: `Ada of ${IG.name}`,
          username: expect.any(String),
        });
      } else {
        expect(conversations[0]!.contact.firstName).toBe("Ada");
      }
    }
  });

  it("applies an Instagram unsend, reaction and a Messenger edit to the right rows", async () => {
    const [igAda] = peopleOf(IG.pageId) as [string];
    const [p1Ada] = peopleOf(P1.pageId) as [string];
    const unsent = midOf(IG.pageId, igAda, 0);
    const reacted = midOf(IG.pageId, igAda, 1);
    const edited = midOf(P1.pageId, p1Ada, 2);
    await postFromMeta("instagram", IG.pageId, [
      fromPerson(IG.pageId, igAda, { message: { mid: unsent, is_deleted: true } }),
      fromPerson(IG.pageId, igAda, {
        reaction: { mid: reacted, action: "react", reaction: "love", emoji: "❤" },
      }),
    ]);
    await postFromMeta("page", P1.pageId, [
      fromPerson(P1.pageId, p1Ada, { message_edit: { mid: edited, text: "edited text", num_edit: 1 } }),
    ]);
    const gone = await eventually(async () => {
      const row = await system.db.message.findFirst({ where: { pageId: IG.pageId, mid: unsent } });
      return row?.deletedAt ? row : undefined;
    });
    expect(gone.text).toBeNull();
    const edit = await eventually(async () => {
      const row = await system.db.message.findFirst({ where: { pageId: P1.pageId, mid: edited } });
      return row?.editCount === 1 ? row : undefined;
    });
    expect(edit.text).toBe("edited text");
    await eventually(
      async () =>
        (await system.db.messageReaction.count({ where: { pageId: IG.pageId, targetMid: reacted } })) === 1,
      { message: "the Instagram reaction stored" },
    );
  });

  it("replies to each through /v1 once, the account through the Instagram API, and Instagram's seen marks the reply read", async () => {
    const replies: Record<string, string> = {};
    for (const channel of CHANNELS) {
      const [ada] = peopleOf(channel.pageId) as [string];
      const res = await api(`/v1/pages/${channel.pageId}/conversations/${ada}/messages`, {
        method: "POST",
        headers: { "idempotency-key": `platforms-${channel.pageId}` },
        body: JSON.stringify({ text: `reply from ${channel.name}` }),
      });
      expect(res.status).toBe(202);
      replies[channel.pageId] = ((await res.json()) as { id: string }).id;
    }
    for (const channel of CHANNELS) {
      await eventually(
        async () =>
          (await system.db.message.findUniqueOrThrow({ where: { id: replies[channel.pageId]! } })).status ===
          "sent",
        { message: `reply on ${channel.name} sent` },
      );
    }
    const sent = (await (await system.fakeMeta("/messages")).json()) as Array<{
      pageId: string;
      mid: string;
      body: { message?: { text?: string } };
    }>;
    for (const channel of CHANNELS) {
      const mine = sent.filter((m) => m.pageId === channel.pageId);
      expect(mine.map((m) => m.body.message?.text)).toEqual([`reply from ${channel.name}`]);
    }
    const igSends = (
      (await (await system.fakeMeta(`/calls?pageId=${IG.pageId}`)).json()) as Array<{
        host: string;
        endpoint: string;
      }>
    ).filter((c) => c.endpoint === "messages");
    expect(igSends.map((c) => c.host)).toEqual(["instagram"]);

    // The echoes come back (Instagram's without app_id or metadata): still one outgoing row per reply.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    for (const channel of CHANNELS) {
      expect(
        await system.db.message.count({ where: { pageId: channel.pageId, direction: "outgoing" } }),
      ).toBe(1);
    }

    const [ada] = peopleOf(IG.pageId) as [string];
    const reply = await system.db.message.findUniqueOrThrow({ where: { id: replies[IG.pageId]! } });
    await postFromMeta("instagram", IG.pageId, [fromPerson(IG.pageId, ada, { read: { mid: reply.mid } })]);
    await eventually(
      async () => (await system.db.message.findUniqueOrThrow({ where: { id: reply.id } })).status === "read",
      { message: "the Instagram reply read" },
    );
    const view = (await (await api(`/v1/pages/${IG.pageId}/conversations/${ada}/messages`)).json()) as {
      data: Array<{ id: string; status: string; deletedAt: string | null }>;
    };
    expect(view.data.find((m) => m.id === reply.id)?.status).toBe("read");
    expect(view.data.filter((m) => m.deletedAt !== null)).toHaveLength(1);
  });

  it("follows the thread to the Page inbox and back, and a block and unblock of a Page with a refused reply in between", async () => {
    const PAGE_INBOX = "263902037430900";
    const [ada] = peopleOf(P1.pageId) as [string];
    // A person at the Page answers in Meta's inbox: Meta moves the thread there and says so (signed).
    const taken = await system.fakeMeta(`/pages/${P1.pageId}/thread-owner`, { psid: ada, appId: PAGE_INBOX });
    expect(taken.ok).toBe(true);
    const at = Date.now();
    const conversation = () =>
      system.db.conversation.findFirstOrThrow({ where: { pageId: P1.pageId, contact: { psid: ada } } });
    await eventually(async () => (await conversation()).threadOwnerAppId === PAGE_INBOX, {
      message: "the Page inbox owns the thread",
    });
    // While the inbox has it, Meta delivers the person's messages in standby.
    const raw = JSON.stringify({
      object: "page",
      entry: [
        {
          id: P1.pageId,
          time: Date.now(),
          standby: [
            fromPerson(P1.pageId, ada, { message: { mid: "m_standby_e2e", text: "to the inbox" } }, at + 500),
          ],
        },
      ],
    });
    await fetch(`${system.ingressUrl}/webhooks/facebook`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-hub-signature-256": webhookSignature(raw, system.appSecret),
      },
      body: raw,
    });
    // Our reply meanwhile: Meta refuses it (10/2018300), and the row says why at once, not after retries.
    const meanwhile = await api(`/v1/pages/${P1.pageId}/conversations/${ada}/messages`, {
      method: "POST",
      body: JSON.stringify({ text: "while the inbox has it" }),
    });
    expect(meanwhile.status).toBe(202);
    const { id: refusedId } = (await meanwhile.json()) as { id: string };
    const refusedRow = await eventually(async () => {
      const row = await system.db.message.findUniqueOrThrow({ where: { id: refusedId } });
      return row.status === "failed" ? row : undefined;
    });
    expect(refusedRow.error).toContain("another app controls this conversation");
    expect(refusedRow.sendAttempts).toBe(1);
    // The inbox gives the thread back.
    const passed = await system.fakeMeta(`/pages/${P1.pageId}/thread-owner`, {
      psid: ada,
      appId: "100000000000001",
    });
    expect(passed.ok).toBe(true);
    await eventually(async () => (await conversation()).threadOwnerAppId === "100000000000001", {
      message: "the thread is ours again",
    });
    const standby = await eventually(
      async () =>
        (await system.db.message.findFirst({ where: { pageId: P1.pageId, mid: "m_standby_e2e" } })) ??
        undefined,
    );
    expect(standby.receivedOnStandby).toBe(true);

    // Meta blocks P2: its replies are refused with Meta's reason; unblocked, it sends again.
    const [bob] = peopleOf(P2.pageId) as [string];
    await postFromMeta("page", P2.pageId, [
      {
        recipient: { id: P2.pageId },
        timestamp: Date.now(),
        policy_enforcement: { action: "block", reason: "spam" },
      },
    ]);
    await eventually(
      async () =>
        (await system.db.pageConnection.findUniqueOrThrow({ where: { pageId: P2.pageId } })).status ===
        "blocked",
    );
    const refused = await api(`/v1/pages/${P2.pageId}/conversations/${bob}/messages`, {
      method: "POST",
      body: JSON.stringify({ text: "while blocked" }),
    });
    expect(refused.status).toBe(409);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toContain(
      "blocked by Meta: spam",
    );
    await postFromMeta("page", P2.pageId, [
      { recipient: { id: P2.pageId }, timestamp: Date.now(), policy_enforcement: { action: "unblock" } },
    ]);
    await eventually(
      async () =>
        (await system.db.pageConnection.findUniqueOrThrow({ where: { pageId: P2.pageId } })).status ===
        "active",
    );
    const again = await api(`/v1/pages/${P2.pageId}/conversations/${bob}/messages`, {
      method: "POST",
      body: JSON.stringify({ text: "after the unblock" }),
    });
    expect(again.status).toBe(202);
    expect(await system.db.contact.count({ where: { psid: "unknown" } })).toBe(0);
  });

  it("left nothing unrouted or dead-lettered", async () => {
    const metrics = await system.metrics("page-router");
    expect(metrics).not.toMatch(/switchboard_router_entries_unrouted_total\{[^}]*\} [1-9]/);
    const page = await api("/v1/pages");
    const pages = (await page.json()) as { data: Array<{ pageId: string }> };
    expect(pages.data.map((p) => p.pageId).sort()).toEqual(CHANNELS.map((c) => c.pageId).sort());
  });
});
