import { buildTextMessageItem, buildWebhookBody, webhookSignature } from "@switchboard/contracts";
import { eventually } from "@switchboard/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type System, startSystem } from "./harness";

const PAGES = [
  { pageId: "501000000000001", name: "Acme Shoes", token: "EAAB-shoes-token" },
  { pageId: "501000000000002", name: "Acme Hats", token: "EAAB-hats-token" },
];

describe("a message travels the whole way: signed POST → ingress → JetStream → page-router → message-service → Postgres", () => {
  let system: System;

  const post = (raw: string, signature = webhookSignature(raw, system.appSecret)) =>
    fetch(`${system.ingressUrl}/webhooks/facebook`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-hub-signature-256": signature },
      body: raw,
    });

  beforeAll(async () => {
    system = await startSystem();
    for (const page of PAGES) {
      const added = await system.fakeMeta("/pages", {
        pageId: page.pageId,
        token: page.token,
        name: page.name,
      });
      expect(added.ok).toBe(true);
      const connected = await system.cli(
        ["pages", "connect", "--page-id", page.pageId, "--name", page.name, "--company", "acme"],
        page.token,
      );
      expect(connected.stderr).toBe("");
      expect(connected.stdout).toContain(`connected page ${page.pageId}`);
    }
  });

  afterAll(async () => {
    await system?.stop();
  });

  it("subscribes each connected page on its own /{page-id}/subscribed_apps", async () => {
    const rows = await eventually(
      async () => {
        const subs = await system.db.pageSubscription.findMany({ where: { status: "subscribed" } });
        return subs.length === PAGES.length && subs;
      },
      { message: "both pages subscribed" },
    );
    expect(rows.map((r) => r.pageId).sort()).toEqual(PAGES.map((p) => p.pageId).sort());
  });

  it("stores concurrent messages for two pages exactly once each, under the right page", async () => {
    const perPage = 15;
    const bodies = PAGES.flatMap((page) =>
      Array.from({ length: perPage }, (_, i) =>
        JSON.stringify(
          buildWebhookBody([
            {
              pageId: page.pageId,
              messaging: [
                buildTextMessageItem({
                  pageId: page.pageId,
                  psid: `psid-${page.pageId.slice(-1)}-${i % 3}`,
                  mid: `m_${page.pageId}_${i}`,
                  text: `message ${i} for ${page.name}`,
                }),
              ],
            },
          ]),
        ),
      ),
    );
    const answers = await Promise.all(bodies.map((raw) => post(raw)));
    expect(answers.map((a) => a.status)).toEqual(bodies.map(() => 200));

    const rows = await eventually(
      async () => {
        const messages = await system.db.message.findMany({ where: { mid: { startsWith: "m_5010" } } });
        return messages.length >= perPage * PAGES.length && messages;
      },
      { message: "all messages stored" },
    );
    expect(rows).toHaveLength(perPage * PAGES.length);
    for (const row of rows) expect(row.mid).toContain(row.pageId);
    expect(rows.every((r) => r.direction === "incoming" && r.status === "received")).toBe(true);
    for (const page of PAGES) {
      expect(await system.db.contact.count({ where: { pageId: page.pageId } })).toBe(3);
      expect(await system.db.conversation.count({ where: { pageId: page.pageId } })).toBe(3);
    }

    // Meta retries a delivery it thinks failed: same bytes again, still one row per message.
    const again = await Promise.all(bodies.slice(0, 5).map((raw) => post(raw)));
    expect(again.map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
    const marker = JSON.stringify(
      buildWebhookBody([
        {
          pageId: PAGES[0]!.pageId,
          messaging: [
            buildTextMessageItem({ pageId: PAGES[0]!.pageId, psid: "psid-marker", mid: "m_marker" }),
          ],
        },
      ]),
    );
    expect((await post(marker)).status).toBe(200);
    await eventually(() =>
      system.db.message.findFirst({ where: { mid: "m_marker" } }).then((m) => m ?? undefined),
    );
    expect(await system.db.message.count({ where: { mid: { startsWith: "m_5010" } } })).toBe(
      perPage * PAGES.length,
    );
  });

  it("refuses a bad signature with 401 and stores nothing", async () => {
    const raw = JSON.stringify(
      buildWebhookBody([
        {
          pageId: PAGES[1]!.pageId,
          messaging: [buildTextMessageItem({ pageId: PAGES[1]!.pageId, psid: "psid-x", mid: "m_forged" })],
        },
      ]),
    );
    const answer = await post(raw, webhookSignature(raw, "not-the-app-secret"));
    expect(answer.status).toBe(401);
    const marker = JSON.stringify(
      buildWebhookBody([
        {
          pageId: PAGES[1]!.pageId,
          messaging: [
            buildTextMessageItem({ pageId: PAGES[1]!.pageId, psid: "psid-x", mid: "m_after_forged" }),
          ],
        },
      ]),
    );
    expect((await post(marker)).status).toBe(200);
    await eventually(() =>
      system.db.message.findFirst({ where: { mid: "m_after_forged" } }).then((m) => m ?? undefined),
    );
    expect(await system.db.message.count({ where: { mid: "m_forged" } })).toBe(0);
  });

  it("shuts every service down gracefully on SIGTERM", async () => {
    const service = system.services["message-service"];
    const exited = new Promise<number | null>((resolve) =>
      service.process.once("exit", (code) => resolve(code)),
    );
    service.process.kill("SIGTERM");
    expect(await exited).toBe(128 + 15);
    expect(service.output()).toMatch(/drain/i);
  });
});
