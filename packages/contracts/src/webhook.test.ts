import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  appObjectLabel,
  MessagingItem,
  platformOfObject,
  quoteLongIds,
  WebhookBody,
  WebhookEntry,
} from "./index";

const fixtures = JSON.parse(
  readFileSync(new URL("../fixtures/peer-webhooks.json", import.meta.url), "utf8"),
) as Array<{ name: string; messaging_event: unknown; body?: unknown }>;

describe("webhook schemas", () => {
  it.each(fixtures.map((f) => [f.name, f] as const))("accepts the recorded item %s", (_name, fixture) => {
    const parsed = MessagingItem.safeParse(fixture.messaging_event);
    expect(parsed.success, JSON.stringify(parsed.error?.issues)).toBe(true);
  });

  it("coerces numeric ids and float or second timestamps", () => {
    const item = MessagingItem.parse({
      sender: { id: 987654321432 },
      recipient: { id: "1" },
      timestamp: 1492414608982.0,
      read: { watermark: "1492414608" },
    });
    expect(item.sender?.id).toBe("987654321432");
    expect(item.read?.watermark).toBe(1492414608000);
  });

  it("rejects a body without entries", () => {
    expect(WebhookBody.safeParse({ object: "page" }).success).toBe(false);
    expect(WebhookBody.safeParse({ object: "page", entry: [{ time: 1 }] }).success).toBe(false);
  });

  it("keeps ids above 2^53 exact and leaves strings alone", () => {
    const raw = '{"id":1234567890123456789,"app_id": 9007199254740993,"text":"\\"id\\":12345678901234567"}';
    const parsed = JSON.parse(quoteLongIds(raw));
    expect(parsed.id).toBe("1234567890123456789");
    expect(parsed.app_id).toBe("9007199254740993");
    expect(parsed.text).toBe('"id":12345678901234567');
    expect(WebhookEntry.parse({ id: parsed.id }).id).toBe("1234567890123456789");
  });
});

describe("platforms and app-level objects", () => {
  it("maps Meta's object to the platform its entries are conversations of", () => {
    expect(platformOfObject("page")).toBe("messenger");
    expect(platformOfObject("instagram")).toBe("instagram");
    for (const object of ["user", "permissions", "application", "whatsapp_business_account", "Page", ""]) {
      expect(platformOfObject(object)).toBeUndefined();
    }
  });

  it("labels app-level objects with a bounded set of names", () => {
    expect(["user", "permissions", "application"].map(appObjectLabel)).toEqual([
      "user",
      "permissions",
      "application",
    ]);
    expect(appObjectLabel("x".repeat(500))).toBe("other");
  });
});

interface RecordedCase {
  name: string;
  source: string;
  platform: "messenger" | "instagram";
  messaging_event?: unknown;
  body?: { entry: Array<{ messaging: unknown[] }> };
  /** JSON text, for what JSON.parse alone would change (long ids). */
  raw?: string;
}
const recorded = (file: string) =>
  JSON.parse(readFileSync(new URL(`../fixtures/${file}`, import.meta.url), "utf8")) as RecordedCase[];
const itemsOf = (c: RecordedCase): unknown[] =>
  c.raw !== undefined
    ? [JSON.parse(quoteLongIds(c.raw))]
    : c.body
      ? c.body.entry.flatMap((e) => e.messaging)
      : [c.messaging_event];

describe("Instagram and current Messenger events, as Meta and other projects recorded them", () => {
  const cases = [...recorded("instagram-webhooks.json"), ...recorded("messenger-events.json")];

  it.each(cases.map((c) => [c.name, c] as const))("accepts %s (with its source)", (_name, c) => {
    expect(c.source.length).toBeGreaterThan(10);
    for (const item of itemsOf(c)) {
      const parsed = MessagingItem.safeParse(item);
      expect(parsed.success, JSON.stringify(parsed.error?.issues)).toBe(true);
    }
    if (c.body) expect(WebhookBody.safeParse(c.body).success).toBe(true);
  });

  const item = (name: string) => {
    const c = cases.find((x) => x.name === name)!;
    return MessagingItem.parse(itemsOf(c)[0]);
  };

  it("keeps an app id longer than a double exact", () => {
    expect(item("pass-thread-control-idle-previous").pass_thread_control).toMatchObject({
      new_owner_app_id: "263902037430900123",
      previous_owner_app_id: null,
    });
    expect(item("take-thread-control").take_thread_control?.new_owner_app_id).toBe("263902037430900");
  });

  it("reads an edit's num_edit as a number, a story reply, an unsend, a seen by mid and a url-null template echo", () => {
    expect(item("message-edit").message_edit).toMatchObject({ mid: "m_edited", num_edit: 2 });
    expect(item("ig-story-reply").message?.reply_to?.story?.url).toBe(
      "https://chatwoot-assets.local/sample.png",
    );
    expect(item("ig-unsend").message?.is_deleted).toBe(true);
    expect(item("ig-seen").read).toEqual({ mid: "message-id-1" });
    expect(item("echo-template-url-null").message?.attachments?.[0]?.url).toBeNull();
    expect(item("echo-template-url-null").message?.app_id).toBe("936557276482485");
    expect(item("policy-enforcement-unblock-hyphen")["policy-enforcement"]).toEqual({ action: "unblock" });
  });

  it("refuses a read with neither watermark nor mid", () => {
    expect(MessagingItem.safeParse({ read: {} }).success).toBe(false);
  });
});
