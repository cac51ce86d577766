import { disconnectPage } from "@switchboard/pages";
import { DEFAULT_SUBSCRIBED_FIELDS } from "@switchboard/subscriptions";
import { eventually } from "@switchboard/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createHarness, type Harness } from "./test-harness";

const desired = [...DEFAULT_SUBSCRIBED_FIELDS].sort();

describe("subscription-service", () => {
  let h: Harness;

  beforeAll(async () => {
    h = await createHarness();
  });
  afterEach(async () => {
    await h.reset();
  });
  afterAll(async () => {
    await h.close();
  });

  const subscription = (pageId: string) => h.db.pageSubscription.findUnique({ where: { pageId } });

  it("subscribes each connected page on its own /{page-id}/subscribed_apps with its own token, then verifies", async () => {
    await h.startReplica("a");
    const tokens = {
      "2001": await h.connectPage("2001"),
      "2002": await h.connectPage("2002"),
      "2003": await h.connectPage("2003"),
    };

    for (const pageId of Object.keys(tokens)) {
      const row = await eventually(async () => {
        const r = await subscription(pageId);
        return r?.status === "subscribed" ? r : undefined;
      });
      expect(row.subscribedFields).toEqual(desired);
      expect(row.lastSubscribedAt).not.toBeNull();
    }

    const posts = h.fake.state.calls.filter((c) => c.endpoint === "subscribed_apps" && c.method === "POST");
    expect(posts).toHaveLength(3);
    for (const [pageId, token] of Object.entries(tokens)) {
      const calls = h.fake.state.callsTo(pageId, "subscribed_apps");
      // POST, then GET to verify that Meta agrees.
      expect(calls.map((c) => c.method)).toEqual(["POST", "GET"]);
      for (const call of calls) {
        expect(call.path).toBe(`/v21.0/${pageId}/subscribed_apps`);
        expect(call.token).toBe(token);
        expect(call.appsecretProofValid).toBe(true);
      }
      expect(h.fake.state.subscriptions(pageId)?.sort()).toEqual(desired);
    }
    expect(h.fake.state.calls.some((c) => c.path.includes("/me/"))).toBe(false);
  });

  it("unsubscribes a disconnected page with DELETE on its own endpoint", async () => {
    await h.startReplica("a");
    const token = await h.connectPage("2101");
    await eventually(async () => (await subscription("2101"))?.status === "subscribed");

    await disconnectPage({ db: h.db, bus: h.control }, "2101");
    const row = await eventually(async () => {
      const r = await subscription("2101");
      return r?.status === "unsubscribed" ? r : undefined;
    });
    expect(row.subscribedFields).toEqual([]);
    const deletes = h.fake.state.callsTo("2101", "subscribed_apps").filter((c) => c.method === "DELETE");
    expect(deletes).toHaveLength(1);
    expect(deletes[0]?.path).toBe("/v21.0/2101/subscribed_apps");
    expect(deletes[0]?.token).toBe(token);
    expect(h.fake.state.subscriptions("2101")).toBeUndefined();
  });
});
