import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { MessagingItem, quoteLongIds, WebhookBody, WebhookEntry } from "./index";

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
