import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { eventually } from "@switchboard/testing";
import { type BrowserContext, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPERATOR_TOKEN, type RunningConsole, startConsole } from "./console-process";
import { type System, startSystem } from "./harness";

const CHROMIUM = "/usr/bin/chromium";
// Tests never change tracked files: the README's picture is refreshed only with UPDATE_SCREENSHOTS=1.
const SCREENSHOT =
  process.env.UPDATE_SCREENSHOTS === "1"
    ? fileURLToPath(new URL("../docs/console.png", import.meta.url))
    : join(mkdtempSync(join(tmpdir(), "sb-console-screenshot-")), "console.png");
const PAGES = [
  { pageId: "601000000000001", name: "Acme Shoes", company: "acme", token: "EAAB-shoes" },
  { pageId: "601000000000002", name: "Bolt Bikes", company: "bolt", token: "EAAB-bikes" },
];
const UNKNOWN_PAGE = "601000000000099";

describe("operator console in a real browser (Debian's chromium, headless)", () => {
  let system: System;
  let operatorConsole: RunningConsole;
  let browser: BrowserContext;

  const fake = (path: string, body?: unknown) => system.fakeMeta(path, body);

  beforeAll(async () => {
    system = await startSystem();
    operatorConsole = await startConsole(system);
    for (const page of PAGES) {
      expect((await fake("/pages", { pageId: page.pageId, token: page.token, name: page.name })).ok).toBe(
        true,
      );
      const connected = await system.cli(
        ["pages", "connect", "--page-id", page.pageId, "--name", page.name, "--company", page.company],
        page.token,
      );
      expect(connected.stdout).toContain(`connected page ${page.pageId}`);
    }
    await eventually(
      async () => (await system.db.pageSubscription.count({ where: { status: "subscribed" } })) === 2,
      {
        message: "both pages subscribed",
      },
    );
    // Bolt Bikes loses its subscription at Meta, and the reconcile loop has recorded it.
    const bikes = PAGES[1]!.pageId;
    expect((await fake(`/pages/${bikes}/drop-subscription`, {})).ok).toBe(true);
    await system.db.pageSubscription.update({
      where: { pageId: bikes },
      data: { status: "missing", subscribedFields: [], lastError: "app not in subscribed_apps" },
    });
    // A customer writes to Acme Shoes; Meta also delivers for a page nobody connected.
    const shoes = PAGES[0]!.pageId;
    const now = Date.now();
    const delivered = await fake("/webhooks", {
      entries: [
        {
          id: shoes,
          time: now,
          messaging: [
            {
              sender: { id: "7001" },
              recipient: { id: shoes },
              timestamp: now,
              message: { mid: "m_console_1", text: "hi" },
            },
          ],
        },
        { id: UNKNOWN_PAGE, time: now, messaging: [] },
      ],
    });
    expect(delivered.ok).toBe(true);
    await eventually(async () => (await system.db.message.count({ where: { pageId: shoes } })) === 1, {
      message: "the message stored",
    });
    // A fresh profile each run (Playwright passes it as --user-data-dir).
    browser = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "sb-console-chromium-")), {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1500, height: 640 },
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await operatorConsole?.stop();
    await system?.stop();
  });

  it("asks for the operator token, lists the pages problems first, re-subscribes a page, opens a page's conversations and a conversation, and signs out", async () => {
    const page = await browser.newPage();
    await page.goto(operatorConsole.url);
    expect(new URL(page.url()).pathname).toBe("/login");
    expect(await page.locator("table").count()).toBe(0);

    await page.fill("#token", "not-the-token");
    await page.click("button[type=submit]");
    await expect.poll(() => page.getByRole("alert").textContent()).toContain("not valid");

    await page.fill("#token", OPERATOR_TOKEN);
    await page.click("button[type=submit]");
    await page.waitForSelector("table");

    const rows = page.locator("tbody tr");
    const ids = await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-page-id")));
    // The unsubscribed page first, then the unknown page's waiting entry, then the healthy page.
    expect(ids).toEqual([PAGES[1]!.pageId, UNKNOWN_PAGE, PAGES[0]!.pageId]);

    const bikes = page.locator(`tr[data-page-id="${PAGES[1]!.pageId}"]`);
    expect(await bikes.locator("[data-field=subscription]").textContent()).toBe("missing");
    expect(await bikes.textContent()).toContain("bolt");
    const shoes = page.locator(`tr[data-page-id="${PAGES[0]!.pageId}"]`);
    expect(await shoes.locator("[data-field=subscription]").textContent()).toBe("subscribed");
    expect(await shoes.locator("[data-field=token]").textContent()).toBe("ok");
    expect(await shoes.locator("[data-field=messages]").textContent()).toBe("1");
    expect(await shoes.locator("[data-field=last-webhook] time").getAttribute("datetime")).not.toBeNull();
    const unknown = page.locator(`tr[data-page-id="${UNKNOWN_PAGE}"]`);
    expect(await unknown.textContent()).toContain("(not connected)");
    expect(await unknown.locator("[data-field=unrouted]").textContent()).toBe("1");

    expect((await page.screenshot({ path: SCREENSHOT, fullPage: true })).length).toBeGreaterThan(0);

    await bikes.locator("button[data-action=resubscribe]").click();
    await expect.poll(() => page.getByRole("status").textContent()).toContain("re-subscribed and verified");
    const after = page.locator(`tr[data-page-id="${PAGES[1]!.pageId}"]`);
    expect(await after.locator("[data-field=subscription]").textContent()).toBe("subscribed");
    const atMeta = (await (await fake(`/pages/${PAGES[1]!.pageId}/subscription`)).json()) as unknown;
    expect(JSON.stringify(atMeta)).toContain("messages");

    // A page's name opens its conversations, a conversation its messages.
    const shoesNow = page.locator(`tr[data-page-id="${PAGES[0]!.pageId}"]`);
    expect(await shoesNow.locator("[data-field=platform]").textContent()).toBe("Messenger");
    await shoesNow.locator(`a[href="/pages/${PAGES[0]!.pageId}/conversations"]`).click();
    await page.waitForURL((url) => url.pathname === `/pages/${PAGES[0]!.pageId}/conversations`);
    const conversation = page.locator("tbody tr[data-conversation-id]");
    expect(await conversation.count()).toBe(1);
    expect(await conversation.textContent()).toContain("7001");
    expect(await conversation.textContent()).toContain("hi");
    expect(await conversation.locator("[data-field=platform]").textContent()).toBe("Messenger");
    await conversation.locator("a").first().click();
    await page.waitForURL((url) => url.pathname.startsWith("/conversations/"));
    const message = page.locator('tbody tr[data-mid="m_console_1"]');
    expect(await message.textContent()).toContain("customer");
    expect(await message.textContent()).toContain("received");
    await page.locator('a[href^="/pages/"]').first().click();
    await page.goto(operatorConsole.url);

    await page.click("button[data-action=sign-out]");
    await page.waitForURL((url) => url.pathname === "/login");
    await page.goto(operatorConsole.url);
    expect(new URL(page.url()).pathname).toBe("/login");
  });
});
