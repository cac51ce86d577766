import { describe, expect, it } from "vitest";
import { createBatcher, type Settled } from "./batch";

const ok = <R>(value: R): Settled<R> => ({ ok: true, value });

describe("createBatcher", () => {
  it("gathers what arrives within the wait into one batch, up to its size", async () => {
    const batches: number[][] = [];
    const batcher = createBatcher<number, number>({
      maxSize: 4,
      maxWaitMs: 20,
      run: async (items) => {
        batches.push(items);
        return items.map((n) => ok(n * 10));
      },
    });
    const results = await Promise.all([1, 2, 3, 4, 5, 6].map((n) => batcher.add(n)));
    expect(results).toEqual([10, 20, 30, 40, 50, 60]);
    expect(batches).toEqual([
      [1, 2, 3, 4],
      [5, 6],
    ]);
  });

  it("gives each item its own outcome: one failing item does not fail its batch", async () => {
    const batcher = createBatcher<string, string>({
      maxSize: 10,
      maxWaitMs: 5,
      run: async (items) =>
        items.map((s): Settled<string> => (s === "poison" ? { ok: false, error: new Error(s) } : ok(s))),
    });
    const outcomes = await Promise.allSettled(["a", "poison", "b"].map((s) => batcher.add(s)));
    expect(outcomes.map((o) => o.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
  });

  it("fails every item of a batch whose run throws, and goes on with the next batch", async () => {
    let calls = 0;
    const batcher = createBatcher<number, number>({
      maxSize: 2,
      maxWaitMs: 1,
      maxInFlight: 1,
      run: async (items) => {
        calls++;
        if (calls === 1) throw new Error("database gone");
        return items.map(ok);
      },
    });
    const outcomes = await Promise.allSettled([1, 2, 3].map((n) => batcher.add(n)));
    expect(outcomes.map((o) => o.status)).toEqual(["rejected", "rejected", "fulfilled"]);
  });

  it("never runs more batches at once than allowed; what arrives meanwhile goes together next", async () => {
    let running = 0;
    let most = 0;
    const sizes: number[] = [];
    const batcher = createBatcher<number, number>({
      maxSize: 100,
      maxWaitMs: 0,
      maxInFlight: 2,
      run: async (items) => {
        running++;
        most = Math.max(most, running);
        sizes.push(items.length);
        await new Promise((r) => setTimeout(r, 20));
        running--;
        return items.map(ok);
      },
    });
    const first = [batcher.add(1)];
    await new Promise((r) => setTimeout(r, 5));
    const second = [batcher.add(2)];
    await new Promise((r) => setTimeout(r, 5));
    const rest = Array.from({ length: 50 }, (_, i) => batcher.add(i + 3));
    expect(batcher.size()).toBe(52);
    await Promise.all([...first, ...second, ...rest]);
    expect(most).toBe(2);
    expect(sizes).toEqual([1, 1, 50]);
    expect(batcher.size()).toBe(0);
  });
});
