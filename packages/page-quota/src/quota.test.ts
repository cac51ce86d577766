import { testServices, uniqueId } from "@switchboard/testing";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { createActivePages } from "./active-pages";
import { createPsidFloodDetector } from "./psid-flood";
import { createPageQuota, pageRateOverridesEnv } from "./quota";

const redis = new Redis(testServices().redisUrl);
afterAll(() => redis.quit());

describe("page quota (GCRA over Redis)", () => {
  it("lets a page through within its burst, then spaces its messages at its rate", async () => {
    const quota = createPageQuota({ redis, keyPrefix: `${uniqueId()}:`, ratePerSecond: 10, burst: 5 });
    const delays: number[] = [];
    for (let i = 0; i < 25; i++) delays.push(await quota.reserve("1"));
    expect(delays.slice(0, 5).every((d) => d === 0)).toBe(true);
    // After the burst each message waits 100 ms more than the previous one (10/s), less the time the
    // loop itself took.
    expect(delays[24]).toBeGreaterThan(1400);
    expect(delays[24]).toBeLessThanOrEqual(2000);
    for (let i = 6; i < 25; i++) expect(delays[i]).toBeGreaterThanOrEqual(delays[i - 1]!);
  });

  it("sends its scripts once, then calls them by hash (EVALSHA), not with their text on every entry", async () => {
    // Its own connection: the counts are this client's, whatever other suites run on the same Redis.
    const own = new Redis(testServices().redisUrl);
    try {
      const quota = createPageQuota({
        redis: own,
        keyPrefix: `${uniqueId()}:`,
        ratePerSecond: 100,
        burst: 50,
      });
      const sent: string[] = [];
      const sendCommand = own.sendCommand.bind(own);
      own.sendCommand = ((command: { name: string }) => {
        sent.push(command.name);
        return sendCommand(command as Parameters<typeof sendCommand>[0]);
      }) as typeof own.sendCommand;
      for (let i = 0; i < 10; i++) {
        await quota.take("p", 1);
        await quota.reserve("p");
      }
      // Twenty calls by hash (one more per script the first time, when Redis answers NOSCRIPT) …
      const bySha = sent.filter((name) => name === "evalsha").length;
      expect(bySha).toBeGreaterThanOrEqual(20);
      expect(bySha).toBeLessThanOrEqual(22);
      // A script this Redis has not seen yet goes once with its text (NOSCRIPT fallback), never again.
      expect(sent.filter((name) => name === "eval").length).toBeLessThanOrEqual(2);
    } finally {
      own.disconnect();
    }
  });

  it("keeps pages apart: a flooding page does not delay another", async () => {
    const quota = createPageQuota({ redis, keyPrefix: `${uniqueId()}:`, ratePerSecond: 10, burst: 1 });
    await quota.reserve("flood", 500);
    expect(await quota.reserve("flood")).toBeGreaterThan(40_000);
    expect(await quota.reserve("quiet")).toBe(0);
  });

  it("shares one schedule between replicas and applies per-page overrides", async () => {
    const keyPrefix = `${uniqueId()}:`;
    const overrides = pageRateOverridesEnv().parse("42:1000,7:0.5");
    expect(overrides).toEqual(
      new Map([
        ["42", 1000],
        ["7", 0.5],
      ]),
    );
    const a = createPageQuota({ redis, keyPrefix, ratePerSecond: 1, burst: 0, overrides });
    const b = createPageQuota({ redis, keyPrefix, ratePerSecond: 1, burst: 0, overrides });
    await a.reserve("9");
    const second = await b.reserve("9");
    expect(second).toBeGreaterThan(500);
    await a.reserve("42", 100);
    expect(await b.reserve("42")).toBeLessThanOrEqual(100);
    expect(a.rateOf("7")).toBe(0.5);
    expect(() => pageRateOverridesEnv().parse("42=1000")).toThrow();
  });
});

describe("page quota: taking slots only when free", () => {
  it("grants the burst and then only what the rate has freed, never running into debt", async () => {
    const quota = createPageQuota({ redis, keyPrefix: `${uniqueId()}:`, ratePerSecond: 10, burst: 4 });
    // A fresh page has its burst plus the current slot.
    expect(await quota.take("1", 20)).toBe(5);
    expect(await quota.take("1", 20)).toBe(0);
    // Refusals do not push the schedule on: 10/s frees about one slot per 100 ms.
    await new Promise((r) => setTimeout(r, 350));
    const freed = await quota.take("1", 20);
    expect(freed).toBeGreaterThanOrEqual(3);
    expect(freed).toBeLessThanOrEqual(4);
    expect(await quota.take("other", 2)).toBe(2);
  });

  it("takes for many pages in one call, each page's calls in the order they were made", async () => {
    const quota = createPageQuota({ redis, keyPrefix: `${uniqueId()}:`, ratePerSecond: 10, burst: 2 });
    // One tick: a page asked twice, two others once; the burst of 2 (+1 at the rate) is each page's own.
    const granted = await Promise.all([
      quota.take("1", 2),
      quota.take("2", 5),
      quota.take("1", 5),
      quota.take("3", 1),
    ]);
    expect(granted).toEqual([2, 3, 1, 1]);
    const waits = await Promise.all([quota.reserve("4", 1), quota.reserve("4", 1), quota.reserve("4", 5)]);
    expect(waits[0]).toBe(0);
    expect(waits[2]).toBeGreaterThanOrEqual(0);
    expect(await quota.take("4", 1)).toBe(0);
  });

  it("a reservation made in debt delays what can be taken after it", async () => {
    const quota = createPageQuota({ redis, keyPrefix: `${uniqueId()}:`, ratePerSecond: 10, burst: 0 });
    await quota.reserve("1", 20);
    expect(await quota.take("1", 1)).toBe(0);
  });
});

describe("active pages (contention)", () => {
  it("says a page contends only while another page was active within the window, across replicas", async () => {
    const keyPrefix = `${uniqueId()}:`;
    const a = createActivePages({ redis, keyPrefix, windowMs: 300, cacheMs: 0 });
    const b = createActivePages({ redis, keyPrefix, windowMs: 300, cacheMs: 0 });
    await a.markActive("1");
    expect(await a.othersActive("1")).toBe(false);
    expect(await b.othersActive("2")).toBe(true);
    await b.markActive("2");
    expect(await a.othersActive("1")).toBe(true);
    expect(await b.othersActive("2")).toBe(true);
    await new Promise((r) => setTimeout(r, 400));
    expect(await a.othersActive("1")).toBe(false);
    expect(await a.othersActive("3")).toBe(false);
  });

  it("marks every page of a burst, however many arrive in one tick", async () => {
    const keyPrefix = `${uniqueId()}:`;
    const replica = createActivePages({ redis, keyPrefix, windowMs: 1000, cacheMs: 0 });
    const pages = Array.from({ length: 500 }, (_, i) => String(10_000 + i));
    await Promise.all(pages.map((page) => replica.markActive(page)));
    expect(await redis.zcard(`${keyPrefix}fair-share:active-pages`)).toBe(500);
    expect(await replica.othersActive("10000")).toBe(true);
  });
});

describe("per-PSID flood detector", () => {
  it("flags a person once per window when they cross the threshold, and only them", async () => {
    const detector = createPsidFloodDetector({
      redis,
      keyPrefix: `${uniqueId()}:`,
      threshold: 10,
      windowMs: 60_000,
    });
    const flags: boolean[] = [];
    for (let i = 0; i < 25; i++) flags.push(await detector.observe("1", "900"));
    expect(flags.filter(Boolean)).toHaveLength(1);
    expect(flags.indexOf(true)).toBe(9);
    expect(await detector.observe("1", "901", 5)).toBe(false);
    expect(await detector.observe("2", "900")).toBe(false);
  });

  it("flags exactly once when the messages of one tick, and of two replicas at once, cross the threshold together", async () => {
    const keyPrefix = `${uniqueId()}:`;
    const options = { redis, keyPrefix, threshold: 15, windowMs: 60_000 };
    const one = createPsidFloodDetector(options);
    const other = createPsidFloodDetector(options);
    // Entries routed side by side: their observations share one pipeline, in the order they were made.
    const firstTick = await Promise.all(Array.from({ length: 12 }, () => one.observe("1", "900")));
    expect(firstTick.indexOf(true)).toBe(-1);
    const together = await Promise.all([
      ...Array.from({ length: 6 }, () => one.observe("1", "900")),
      ...Array.from({ length: 6 }, () => other.observe("1", "900")),
      one.observe("1", "901", 3),
    ]);
    expect(together.filter(Boolean)).toHaveLength(1);
    expect(together.at(-1)).toBe(false);
    expect(await one.observe("1", "900")).toBe(false);
  });
});
