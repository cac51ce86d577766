import { listStored, publishJson } from "@switchboard/bus";
import { PageLifecycleEvent } from "@switchboard/contracts";
import { disconnectPage } from "@switchboard/pages";
import {
  DEFAULT_SUBSCRIBED_FIELDS,
  INSTAGRAM_DEFAULT_SUBSCRIBED_FIELDS,
  reconcileSubscription,
} from "@switchboard/subscriptions";
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

  it("subscribes an Instagram account on the Instagram host beside a Page on the Facebook host, and unsubscribes it there", async () => {
    await h.startReplica("a");
    const igToken = await h.connectPage("17841400000002001", "IGAA-2001", "instagram");
    await h.connectPage("2004");
    const ig = await eventually(async () => {
      const r = await subscription("17841400000002001");
      return r?.status === "subscribed" ? r : undefined;
    });
    expect(ig.subscribedFields).toEqual([...INSTAGRAM_DEFAULT_SUBSCRIBED_FIELDS].sort());
    await eventually(async () => (await subscription("2004"))?.status === "subscribed");
    const igCalls = h.fake.state.callsTo("17841400000002001", "subscribed_apps");
    expect(igCalls.map((c) => [c.host, c.method, c.path])).toEqual([
      ["instagram", "POST", "/v21.0/17841400000002001/subscribed_apps"],
      ["instagram", "GET", "/v21.0/17841400000002001/subscribed_apps"],
    ]);
    expect(igCalls.every((c) => c.token === igToken)).toBe(true);
    expect(h.fake.state.callsTo("2004", "subscribed_apps").every((c) => c.host === "facebook")).toBe(true);

    await disconnectPage({ db: h.db, bus: h.control }, "17841400000002001");
    await eventually(async () => (await subscription("17841400000002001"))?.status === "unsubscribed");
    expect(h.fake.state.callsTo("17841400000002001", "subscribed_apps").at(-1)).toMatchObject({
      host: "instagram",
      method: "DELETE",
    });
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

  const gets = (pageId: string) =>
    h.fake.state.callsTo(pageId, "subscribed_apps").filter((c) => c.method === "GET").length;
  const waitSubscribed = (pageId: string) =>
    eventually(async () => (await subscription(pageId))?.status === "subscribed", {
      message: `${pageId} subscribed`,
    });

  it("repairs a subscription dropped at Meta on the next reconcile", async () => {
    const replica = await h.startReplica("a", { intervalMs: 1000 });
    await h.connectPage("2201");
    await h.connectPage("2202");
    await waitSubscribed("2201");
    const firstSubscribedAt = (await subscription("2201"))?.lastSubscribedAt?.getTime();

    h.fake.state.dropSubscription("2201");
    await eventually(() => h.fake.state.subscriptions("2201")?.length === desired.length, {
      message: "re-subscribed at Meta",
    });
    const row = await eventually(async () => {
      const r = await subscription("2201");
      return r?.status === "subscribed" && r.lastSubscribedAt?.getTime() !== firstSubscribedAt
        ? r
        : undefined;
    });
    expect(row.subscribedFields).toEqual(desired);

    // The repair was found by a check (GET), then POSTed on the page's own endpoint, then verified.
    const methods = h.fake.state.callsTo("2201", "subscribed_apps").map((c) => c.method);
    expect(methods.slice(0, 2)).toEqual(["POST", "GET"]);
    expect(methods.slice(2).join(",")).toMatch(/GET,POST,GET/);
    // Metrics follow the recorded row.
    const metrics = await eventually(async () => {
      const text = await replica.registry.metrics();
      return /switchboard_page_subscription_status\{page_id="2201",status="subscribed"[^}]*\} 1/.test(text) &&
        /switchboard_subscription_reconciles_total\{trigger="schedule",outcome="repaired"[^}]*\} 1/.test(text)
        ? text
        : undefined;
    });
    expect(metrics).toContain(
      'switchboard_graph_calls_total{page_id="2201",endpoint="subscribed_apps:POST",outcome="ok"',
    );
  });

  it("moves a page whose token was revoked to reauthorization_required and stops calling Meta for it", async () => {
    await h.startReplica("a", { intervalMs: 1000 });
    await h.connectPage("2301");
    await h.connectPage("2302");
    await waitSubscribed("2301");
    await waitSubscribed("2302");

    h.fake.state.revokeToken("2301");
    const page = await eventually(async () => {
      const p = await h.db.pageConnection.findUnique({ where: { pageId: "2301" } });
      return p?.status === "reauthorization_required" ? p : undefined;
    });
    expect(page.statusReason).toContain("token invalid");
    expect(page.statusReason).not.toContain("EAAB");
    const row = await subscription("2301");
    expect(row?.status).toBe("reauthorization_required");
    expect(row?.lastError).toContain("190");

    // No retry storm: over three more intervals the page is not called again, while its neighbour is.
    const callsAfter = h.fake.state.callsTo("2301").length;
    const neighbourBefore = gets("2302");
    await eventually(() => gets("2302") >= neighbourBefore + 3, { message: "neighbour checked 3 times" });
    expect(h.fake.state.callsTo("2301").length).toBe(callsAfter);
    const events = await listStored(h.control.js, h.control.jsm, h.control.topology.streams.pages.name);
    const statusEvents = events
      .map((m) => PageLifecycleEvent.parse(JSON.parse(new TextDecoder().decode(m.data))))
      .filter((e) => e.type === "page.status_changed" && e.pageId === "2301");
    expect(statusEvents).toHaveLength(1);
    expect(statusEvents[0]?.status).toBe("reauthorization_required");

    // A new token (the operator reconnects the page) subscribes it again.
    await h.connectPage("2301");
    await waitSubscribed("2301");
    expect((await h.db.pageConnection.findUnique({ where: { pageId: "2301" } }))?.status).toBe("active");

    // Each move of the subscription's health is announced once (outbound webhooks deliver it), and a
    // check that changes nothing announces nothing.
    const moves = await eventually(async () => {
      const stored = await listStored(h.control.js, h.control.jsm, h.control.topology.streams.pages.name);
      const changes = stored
        .map((m) => PageLifecycleEvent.parse(JSON.parse(new TextDecoder().decode(m.data))))
        .filter((e) => e.type === "page.subscription_changed" && e.pageId === "2301")
        .map((e) => `${e.previousSubscriptionStatus ?? "none"}→${e.subscriptionStatus}`);
      return changes.length === 3 ? changes : undefined;
    });
    expect(moves).toEqual([
      "none→subscribed",
      "subscribed→reauthorization_required",
      "reauthorization_required→subscribed",
    ]);
  });

  it("announces a subscription's move once when two replicas check the page at the same time", async () => {
    await h.connectPage("2351"); // no replica runs: the two checks below are the only ones
    const ctx = h.context(h.control);
    const results = await Promise.all([
      reconcileSubscription(ctx, "2351", "subscribe"),
      reconcileSubscription(ctx, "2351", "subscribe"),
    ]);
    expect(results.map((r) => r.status)).toEqual(["subscribed", "subscribed"]);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const stored = await listStored(h.control.js, h.control.jsm, h.control.topology.streams.pages.name);
    const announced = stored
      .map((m) => PageLifecycleEvent.parse(JSON.parse(new TextDecoder().decode(m.data))))
      .filter((e) => e.type === "page.subscription_changed" && e.pageId === "2351");
    expect(announced).toHaveLength(1);
    expect(announced[0]).toMatchObject({
      subscriptionStatus: "subscribed",
      previousSubscriptionStatus: null,
    });
  });

  it("backs off a rate-limited page while the other pages are still checked", async () => {
    await h.startReplica("a", { intervalMs: 1000 });
    for (const pageId of ["2401", "2402", "2403"]) await h.connectPage(pageId);
    for (const pageId of ["2401", "2402", "2403"]) await waitSubscribed(pageId);

    h.fake.state.injectError("2402", { code: 32, endpoint: "subscribed_apps" });
    const limitedBefore = h.fake.state.callsTo("2402").length;
    const othersBefore = { "2401": gets("2401"), "2403": gets("2403") };
    await eventually(
      () => gets("2401") >= othersBefore["2401"] + 4 && gets("2403") >= othersBefore["2403"] + 4,
      {
        message: "the other pages checked four more times",
      },
    );
    // Rate-limited on the first check, then left alone for two intervals, then four: at most two calls.
    const limitedCalls = h.fake.state.callsTo("2402").length - limitedBefore;
    expect(limitedCalls).toBeGreaterThanOrEqual(1);
    expect(limitedCalls).toBeLessThanOrEqual(2);
    const row = await subscription("2402");
    expect(row?.lastError).toContain("rate limited");
    expect(row?.consecutiveFailures).toBeGreaterThanOrEqual(1);
    expect(await h.redis.pttl(`${h.keyPrefix}subscriptions:backoff:2402`)).toBeGreaterThan(0);
    expect((await h.db.pageConnection.findUnique({ where: { pageId: "2402" } }))?.status).toBe("active");
  });

  it("subscribes a page connected while Meta rate-limits it once its back-off is over", async () => {
    await h.startReplica("a", { intervalMs: 1000 });
    h.fake.state.addPage({ pageId: "2801", token: "EAAB-2801" });
    h.fake.state.injectError("2801", { code: 613, times: 1, endpoint: "subscribed_apps:POST" });
    await h.connectPage("2801", "EAAB-2801");

    const row = await waitSubscribed("2801").then(() => subscription("2801"));
    expect(row?.subscribedFields).toEqual(desired);
    const posts = h.fake.state.callsTo("2801", "subscribed_apps").filter((c) => c.method === "POST");
    expect(posts.length).toBeGreaterThanOrEqual(2);
    // Nothing called Meta for the page between the rate limit and the end of its back-off.
    const [limited, next] = posts;
    const between = h.fake.state
      .callsTo("2801")
      .filter((c) => c.at > (limited?.at ?? 0) && c.at < (next?.at ?? 0));
    expect(between).toEqual([]);
  });

  it("with two replicas, reconciles each page exactly once per interval", async () => {
    const replicas = [
      await h.startReplica("r1", { intervalMs: 1000 }),
      await h.startReplica("r2", { intervalMs: 1000 }),
    ];
    const pages = ["2501", "2502", "2503", "2504", "2505"];
    for (const pageId of pages) await h.connectPage(pageId);
    for (const pageId of pages) await waitSubscribed(pageId);
    const firstFullSlot = Math.floor(Date.now() / 1000) + 1;
    await new Promise((resolve) => setTimeout(resolve, 4200));
    const lastFullSlot = Math.floor(Date.now() / 1000) - 2;
    // Each replica exports every page's status, including pages the other one checked.
    for (const replica of replicas) {
      const text = await replica.registry.metrics();
      for (const pageId of pages) {
        expect(text).toMatch(
          new RegExp(
            `switchboard_page_subscription_status\\{page_id="${pageId}",status="subscribed"[^}]*\\} 1`,
          ),
        );
      }
    }
    await Promise.all(replicas.map((r) => r.stop()));

    const done = replicas.flatMap((r) => r.reconciled.map((job) => `${job.pageId}:${job.slot}`));
    expect(new Set(done).size).toBe(done.length);
    for (let slot = firstFullSlot; slot <= lastFullSlot; slot++) {
      for (const pageId of pages) expect(done).toContain(`${pageId}:${slot}`);
    }
    expect(lastFullSlot - firstFullSlot).toBeGreaterThanOrEqual(1);
    // Meta saw exactly one check per reconcile: one verification GET after subscribing, one per job.
    for (const pageId of pages) {
      expect(gets(pageId)).toBe(1 + done.filter((d) => d.startsWith(`${pageId}:`)).length);
    }
    // Both replicas scheduled every job; the stream kept one of each.
    const scheduled = await Promise.all(
      replicas.map(async (r) => (await r.metrics.jobsScheduled.get()).values),
    );
    for (const values of scheduled) expect(values.reduce((sum, v) => sum + v.value, 0)).toBeGreaterThan(0);
    expect(scheduled.flat().some((v) => v.labels.result === "duplicate" && v.value > 0)).toBe(true);
  });

  it("turns repeated failures into status error with a per-page failure gauge, and recovers", async () => {
    const replica = await h.startReplica("a", { intervalMs: 1000 });
    await h.connectPage("2601");
    await waitSubscribed("2601");

    h.fake.state.injectError("2601", { status: 500, endpoint: "subscribed_apps" });
    const row = await eventually(
      async () => {
        const r = await subscription("2601");
        return r?.status === "error" ? r : undefined;
      },
      { message: "status error" },
    );
    expect(row.consecutiveFailures).toBeGreaterThanOrEqual(3);
    const text = await eventually(async () => {
      const t = await replica.registry.metrics();
      return /switchboard_page_subscription_status\{page_id="2601",status="error"[^}]*\} 1/.test(t)
        ? t
        : undefined;
    });
    expect(text).toMatch(/switchboard_page_subscription_consecutive_failures\{page_id="2601"[^}]*\} [3-9]/);
    expect(text).toMatch(
      /switchboard_graph_calls_total\{page_id="2601",endpoint="subscribed_apps:GET",outcome="transient"/,
    );

    h.fake.state.clearErrors("2601");
    const recovered = await eventually(async () => {
      const r = await subscription("2601");
      return r?.status === "subscribed" ? r : undefined;
    });
    expect(recovered.consecutiveFailures).toBe(0);
    expect(recovered.lastError).toBeNull();
  });

  it("runs a job once even when the stream no longer remembers its first publish", async () => {
    const replica = await h.startReplica("a");
    await h.connectPage("2701");
    await waitSubscribed("2701");
    const intervalMs = 3_600_000;
    const job = {
      pageId: "2701",
      slot: Math.floor(Date.now() / intervalMs),
      intervalMs,
      scheduledAt: Date.now(),
    };
    const subject = h.control.topology.subjects.reconcileJob("2701");
    // Two message ids: what two replicas publish when the duplicate window is shorter than the interval.
    await publishJson(h.control.js, subject, job, { msgId: "first-publish" });
    await publishJson(h.control.js, subject, job, { msgId: "second-publish" });

    await eventually(async () =>
      /switchboard_subscription_reconciles_total\{trigger="schedule",outcome="duplicate"[^}]*\} 1/.test(
        await replica.registry.metrics(),
      ),
    );
    await eventually(() => replica.reconciled.length === 1, { message: "one job reconciled" });
    expect(h.fake.state.callsTo("2701", "subscribed_apps").filter((c) => c.method === "GET")).toHaveLength(2);
  });
});
