import { loadConfig } from "@switchboard/config";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { DEFAULT_SUBSCRIBED_FIELDS, missingFields, subscribedFieldsEnv } from "./fields";
import { viewOf } from "./subscription";

const schema = z.object({ SUBSCRIBED_FIELDS: subscribedFieldsEnv() });

describe("desired fields", () => {
  it("defaults to every Messenger event and reads a comma list", () => {
    expect(loadConfig(schema, {}).SUBSCRIBED_FIELDS).toEqual([...DEFAULT_SUBSCRIBED_FIELDS]);
    expect(
      loadConfig(schema, { SUBSCRIBED_FIELDS: " messages, message_echoes,messages" }).SUBSCRIBED_FIELDS,
    ).toEqual(["messages", "message_echoes"]);
    expect(() => loadConfig(schema, { SUBSCRIBED_FIELDS: "messages,Feed!" })).toThrow(
      /SUBSCRIBED_FIELDS is invalid/,
    );
  });

  it("asks for Meta's recommended Page fields, conversation routing and edits included, never response_feedback", () => {
    for (const field of [
      "standby",
      "messaging_handovers",
      "message_edits",
      "messaging_policy_enforcement",
      "messaging_account_linking",
    ]) {
      expect(DEFAULT_SUBSCRIBED_FIELDS).toContain(field);
    }
    expect(DEFAULT_SUBSCRIBED_FIELDS).not.toContain("response_feedback");
  });

  it("finds this app among the page's apps and what it lacks", () => {
    const apps = [
      { id: "999", subscribed_fields: [...DEFAULT_SUBSCRIBED_FIELDS] },
      { id: "42", subscribed_fields: ["messages", "feed"] },
    ];
    const view = viewOf(apps, "42", ["messages", "message_echoes"]);
    expect(view).toEqual({
      appSubscribed: true,
      subscribedFields: ["feed", "messages"],
      missingFields: ["message_echoes"],
      complete: false,
    });
    expect(viewOf(apps, "7", ["messages"])).toMatchObject({ appSubscribed: false, complete: false });
    expect(viewOf(apps, "999", DEFAULT_SUBSCRIBED_FIELDS).complete).toBe(true);
    expect(missingFields(["a", "b", "c"], ["b"])).toEqual(["a", "c"]);
  });
});
