import { testServices, uniqueId } from "@switchboard/testing";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
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
});
