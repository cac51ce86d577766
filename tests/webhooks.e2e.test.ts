import { startWebhookReceiver, type WebhookReceiver } from "@switchboard/chaos";
import { buildTextMessageItem, buildWebhookBody, webhookSignature } from "@switchboard/contracts";
import { eventually } from "@switchboard/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ALL_SERVICES, type System, startSystem } from "./harness";

const PAGE = { pageId: "502000000000001", name: "Acme Shoes", token: "EAAB-webhooks-shoes" };
const OTHER = { pageId: "502000000000002", name: "Globex Hats", token: "EAAB-webhooks-hats" };
const PSID = "7020000000000001";

/**
 * Outbound webhooks through the whole system as processes: a signed Meta webhook → ingress → page-router
 * → message-service → domain stream → webhook-dispatcher → the product's endpoint (a real HTTP server that
 * verifies each delivery with the `standardwebhooks` package). The endpoint is registered through /v1.
 */
describe("outbound webhooks: the product hears every change of its pages, signed, once, in order", () => {
  let system: System;
  let receiver: WebhookReceiver;
  let otherReceiver: WebhookReceiver;
  let apiKey: string;
  let endpointId: string;
  const api = (path: string, init: RequestInit = {}, key = apiKey) =>
    fetch(`${system.urls["message-service"]}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...init.headers },
    });
  const postFromMeta = (pageId: string, mids: string[]) => {
    const raw = JSON.stringify(
      buildWebhookBody([
        {
          pageId,
          messaging: mids.map((mid, i) =>
            buildTextMessageItem({ pageId, psid: PSID, mid, text: `hello ${i}`, timestamp: Date.now() + i }),
          ),
        },
      ]),
    );
    return fetch(`${system.ingressUrl}/webhooks/facebook`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-hub-signature-256": webhookSignature(raw, system.appSecret),
      },
      body: raw,
    });
  };
  const created = (r: WebhookReceiver) =>
    r.accepted.filter((d) => d.type === "message.created" && d.data.direction === "incoming");

  beforeAll(async () => {
    receiver = await startWebhookReceiver({ answerAfterMs: 0, failEvery: 0 });
    otherReceiver = await startWebhookReceiver({ answerAfterMs: 0, failEvery: 0 });
    system = await startSystem(
      { WEBHOOK_RETRY_SCHEDULE: "300ms,600ms,1s,1s,1s", WEBHOOK_POLL_INTERVAL: "100ms" },
      { apps: ALL_SERVICES },
    );
    for (const [page, company] of [
      [PAGE, "acme"],
      [OTHER, "globex"],
    ] as const) {
      expect((await system.fakeMeta("/pages", page)).ok).toBe(true);
      const connected = await system.cli(
        ["pages", "connect", "--page-id", page.pageId, "--name", page.name, "--company", company],
        page.token,
      );
      expect(connected.code, connected.stderr).toBe(0);
    }
    expect((await system.fakeMeta("/users", { pageId: PAGE.pageId, psid: PSID, firstName: "Ada" })).ok).toBe(
      true,
    );
    apiKey = (await system.cli(["api-keys", "create", "--company", "acme"])).stdout.trim();
    // The other company's endpoint comes from the operator CLI: its secret is printed once, on stdout.
    const other = await system.cli(["webhooks", "create", "--company", "globex", "--url", otherReceiver.url]);
    expect(other.code, other.stderr).toBe(0);
    expect(other.stderr).toMatch(/created webhook endpoint .* for globex; its secret is shown only now/);
    otherReceiver.useSecret(other.stdout.trim());
  });

  afterAll(async () => {
    await system?.stop();
    await receiver?.close();
    await otherReceiver?.close();
  });

  it("registers an endpoint through /v1 and shows its secret once", async () => {
    const res = await api("/v1/webhook-endpoints", {
      method: "POST",
      body: JSON.stringify({ url: receiver.url, description: "the product" }),
    });
    expect(res.status).toBe(201);
    const body = (await res.json()) as { id: string; secret: string; url: string; events: unknown };
    expect(body.secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
    expect(body.url).toBe(receiver.url);
    receiver.useSecret(body.secret);
    endpointId = body.id;
    const shown = (await (await api(`/v1/webhook-endpoints/${endpointId}`)).json()) as Record<
      string,
      unknown
    >;
    expect(shown.secret).toBeUndefined();
  });

  it("delivers each incoming message once, verified, in the conversation's order, to its company only", async () => {
    const mids = Array.from({ length: 5 }, (_, i) => `m_wh_e2e_${i}`);
    expect((await postFromMeta(PAGE.pageId, mids)).status).toBe(200);
    await eventually(() => created(receiver).length === 5, { message: "five message.created delivered" });
    expect(created(receiver).map((d) => d.data.mid)).toEqual(mids);
    expect(receiver.badSignatures()).toBe(0);
    // Meta retries the same POST: stored once, delivered once.
    expect((await postFromMeta(PAGE.pageId, mids)).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(created(receiver)).toHaveLength(5);
    expect(otherReceiver.accepted.filter((d) => d.data.mid?.startsWith("m_wh_e2e_"))).toEqual([]);
  });

  it("delivers a reply sent through /v1 as message.sent", async () => {
    const res = await api(`/v1/pages/${PAGE.pageId}/conversations/${PSID}/messages`, {
      method: "POST",
      headers: { "idempotency-key": "wh-e2e-reply-1" },
      body: JSON.stringify({ text: "Thanks, on its way" }),
    });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const sent = await eventually(() =>
      receiver.accepted.find(
        (d) => d.type === "message.sent" && (d.data as { messageId?: string }).messageId === id,
      ),
    );
    expect(sent.data).toMatchObject({ pageId: PAGE.pageId, psid: PSID });
  });

  it("keeps a delivery log and lets the CLI list, replay (same webhook-id) and disable the endpoint", async () => {
    type Log = {
      data: Array<{ webhookId: string; status: string; attempts: Array<{ statusCode: number }> }>;
    };
    // The reply's later events (delivered, read, echo) may still be on their way: wait for a quiet log.
    const log = await eventually(async () => {
      const page = (await (
        await api(`/v1/webhook-endpoints/${endpointId}/deliveries?limit=50`)
      ).json()) as Log;
      return page.data.every((d) => d.status === "delivered") ? page : undefined;
    });
    expect(log.data.length).toBeGreaterThanOrEqual(6);
    expect(log.data.map((d) => d.attempts.at(-1)?.statusCode)).toEqual(log.data.map(() => 204));

    const listed = await system.cli(["webhooks", "list", "--company", "acme", "--json"]);
    expect(listed.code, listed.stderr).toBe(0);
    const rows = JSON.parse(listed.stdout) as Array<{ id: string; enabled: boolean; pending: number }>;
    expect(rows).toEqual([expect.objectContaining({ id: endpointId, enabled: true, pending: 0 })]);

    const before = receiver.accepted.length;
    const replay = await system.cli(["webhooks", "replay", "--endpoint", endpointId, "--since", "1h"]);
    expect(replay.code, replay.stderr).toBe(0);
    expect(replay.stdout).toMatch(new RegExp(`queued ${log.data.length} deliveries`));
    await eventually(() => receiver.accepted.length === before + log.data.length, { message: "replayed" });
    const replayedIds = new Set(receiver.accepted.slice(before).map((d) => d.webhookId));
    expect(replayedIds).toEqual(new Set(log.data.map((d) => d.webhookId)));

    const disabled = await system.cli(["webhooks", "disable", "--id", endpointId, "--reason", "e2e"]);
    expect(disabled.code, disabled.stderr).toBe(0);
    const afterDisable = receiver.accepted.length;
    expect((await postFromMeta(PAGE.pageId, ["m_wh_e2e_after_disable"])).status).toBe(200);
    // Disabled is paused: the message's delivery is queued and waits.
    await eventually(async () => {
      const rows = await system.db.webhookDelivery.count({ where: { endpointId, status: "pending" } });
      return rows >= 1;
    });
    await new Promise((resolve) => setTimeout(resolve, 800));
    expect(receiver.accepted.length).toBe(afterDisable);
    // Enabled again by the company: what waited is delivered, in order.
    const enabled = await api(`/v1/webhook-endpoints/${endpointId}`, {
      method: "PATCH",
      body: JSON.stringify({ enabled: true }),
    });
    expect(enabled.status).toBe(200);
    await eventually(() => created(receiver).some((d) => d.data.mid === "m_wh_e2e_after_disable"));
  });
});
