import { listStored, publishRaw } from "@switchboard/bus";
import { Headers } from "@switchboard/contracts";
import { createTokenCipher, generateTokenKey } from "@switchboard/crypto";
import type { Db } from "@switchboard/db";
import { encryptPageToken } from "@switchboard/pages";
import { eventually } from "@switchboard/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createHarness, type Harness, type Replica } from "./test-harness";

/**
 * A database whose reads of a page's stored token fail `times` times with a connection error (a
 * failover, a dropped connection), while everything else answers.
 */
function failingTokenReads(db: Db, times: number) {
  const state = { left: times, reads: 0 };
  const pageConnection = new Proxy(db.pageConnection, {
    get(target, property) {
      const value = Reflect.get(target, property, target);
      if (property !== "findUnique") return value;
      return async (args: { select?: { pageAccessTokenEnc?: boolean } }) => {
        if (args.select?.pageAccessTokenEnc) {
          state.reads++;
          if (state.left > 0) {
            state.left--;
            throw new Error("Connection terminated unexpectedly");
          }
        }
        return value.call(target, args as never);
      };
    },
  });
  const proxy = new Proxy(db, {
    get: (target, property) =>
      property === "pageConnection" ? pageConnection : Reflect.get(target, property, target),
  });
  return { db: proxy, state };
}

describe("subscription-service failures", () => {
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
  const waitSubscribed = (pageId: string, timeoutMs = 15_000) =>
    eventually(
      async () => {
        const row = await subscription(pageId);
        return row?.status === "subscribed" ? row : undefined;
      },
      { message: `${pageId} subscribed`, timeoutMs },
    );
  const lifecycleConsumer = () =>
    h.control.jsm.consumers.info(
      h.control.topology.streams.pages.name,
      h.control.topology.consumers.subscriptionService,
    );
  const deadLetters = () =>
    listStored(h.control.js, h.control.jsm, h.control.topology.streams.deadLetter.name);
  const paused = async (replica: Replica, consumer: string) => {
    const metric = await replica.metrics.consumerPaused.get();
    return metric.values.find((v) => v.labels.consumer === consumer)?.value;
  };

  it("retries a page.connected event whose token read hit a database error, and subscribes the page: never recorded as an unreadable token", async () => {
    const flaky = failingTokenReads(h.db, 1);
    await h.startReplica("a", { db: flaky.db });
    await h.connectPage("3001");

    const row = await waitSubscribed("3001");
    expect(row.lastError).toBeNull();
    expect(row.consecutiveFailures).toBe(0);
    // The first delivery failed on the database, the redelivery subscribed.
    expect(flaky.state.reads).toBe(2);
    expect(h.fake.state.callsTo("3001", "subscribed_apps").map((c) => c.method)).toEqual(["POST", "GET"]);
    expect(await deadLetters()).toEqual([]);
  });

  it("records a token that cannot be decrypted as the page's problem and acknowledges the event: no retry, no dead letter", async () => {
    await h.connectPage("3101");
    // The row's token was encrypted with a key this deployment does not have any more.
    const retired = createTokenCipher(generateTokenKey("retired"));
    await h.db.pageConnection.update({
      where: { pageId: "3101" },
      data: { pageAccessTokenEnc: encryptPageToken(retired, "3101", "EAAB-3101-old") },
    });
    const replica = await h.startReplica("a");

    const row = await eventually(async () => {
      const r = await subscription("3101");
      return r?.status === "error" ? r : undefined;
    });
    expect(row.lastError).toMatch(
      /token cannot be decrypted \(is its key still in TOKEN_ENCRYPTION_KEYS\?\)/,
    );
    const info = await eventually(async () => {
      const i = await lifecycleConsumer();
      return i.num_ack_pending === 0 && i.num_pending === 0 ? i : undefined;
    });
    expect(info.num_redelivered).toBe(0);
    // Every message on the pages stream (page.connected, then the service's own announcements of what
    // changed) delivered once: no redelivery.
    const onStream = await listStored(h.control.js, h.control.jsm, h.control.topology.streams.pages.name);
    expect(onStream.length).toBeGreaterThanOrEqual(2);
    expect(info.delivered.consumer_seq).toBe(onStream.length);
    expect(h.fake.state.callsTo("3101")).toEqual([]);
    expect(await deadLetters()).toEqual([]);
    expect(await replica.registry.metrics()).toMatch(
      /switchboard_subscription_reconciles_total\{trigger="lifecycle",outcome="failed"[^}]*\} 1/,
    );
  });

  it("dead-letters bytes that are not JSON at once, on the lifecycle and the reconcile subjects, without redeliveries", async () => {
    await h.startReplica("a");
    const { js, topology } = h.control;
    await publishRaw(js, topology.subjects.pageLifecycle("page.connected", "3201"), "{not json");
    await publishRaw(js, topology.subjects.reconcileJob("3201"), new Uint8Array([0xff, 0xfe, 0x00]));

    const letters = await eventually(async () => {
      const stored = await deadLetters();
      return stored.length === 2 ? stored : undefined;
    });
    const byStage = new Map(letters.map((m) => [m.headers[Headers.stage], m]));
    for (const [stage, what] of [
      ["subscription-lifecycle", "page lifecycle event"],
      ["subscription-reconcile", "reconcile job"],
    ] as const) {
      const letter = byStage.get(stage);
      expect(letter?.reason, stage).toMatch(new RegExp(`^undecodable ${what}: not JSON`));
      expect(letter?.headers[Headers.deliveries], stage).toBe("1");
    }
    const info = await lifecycleConsumer();
    expect(info.num_redelivered).toBe(0);
    expect(info.num_ack_pending).toBe(0);
  });

  it("pauses through a database that stops answering: no delivery spent while it lasts, nothing dead-lettered, and the page is subscribed once it answers", async () => {
    const { gate, db } = await h.gatedDatabase();
    const replica = await h.startReplica("a", { db, handlerTimeoutMs: 2000 });
    expect(await paused(replica, "lifecycle")).toBe(0);

    gate.stall();
    await h.connectPage("3301");
    // The handler hangs on the database until its deadline, the probe finds PostgreSQL silent: pause.
    await eventually(async () => (await paused(replica, "lifecycle")) === 1, {
      message: "lifecycle consumer paused",
    });
    // Held while paused: delivered once, not given back, not dead-lettered.
    await new Promise((r) => setTimeout(r, 3000));
    const during = await lifecycleConsumer();
    expect(during.num_ack_pending).toBe(1);
    expect(during.num_redelivered).toBe(0);
    expect(during.delivered.consumer_seq).toBe(1);
    expect(await subscription("3301")).toBeNull();

    gate.resume();
    const row = await waitSubscribed("3301", 30_000);
    expect(row.consecutiveFailures).toBe(0);
    expect(await paused(replica, "lifecycle")).toBe(0);
    const after = await eventually(async () => {
      const i = await lifecycleConsumer();
      return i.num_ack_pending === 0 ? i : undefined;
    });
    // However long the outage, it cost the event at most the one try it was resumed with.
    expect(after.delivered.consumer_seq).toBeLessThanOrEqual(2);
    // The event took effect once (the periodic check may also have found the page unsubscribed meanwhile).
    expect(await replica.registry.metrics()).toMatch(
      /switchboard_subscription_reconciles_total\{trigger="lifecycle",outcome="subscribed"[^}]*\} 1\n/,
    );
    expect(await deadLetters()).toEqual([]);
  }, 60_000);
});
