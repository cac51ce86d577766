import { quickScenarios, runScenario, startTestBed, type TestBed } from "@switchboard/chaos";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/**
 * `pnpm chaos --quick` inside `pnpm test`: the production-shaped bed (3 NATS nodes with R3 streams, 3 Redis
 * nodes, a private PostgreSQL, 2 replicas of every service) under load while a replica of every service is
 * killed, while both webhook-dispatchers are killed mid-delivery, then while a NATS node is. Every message is stored once, every send reaches Meta once and in
 * order, nothing is dead-lettered, every stream stays R3. The full set of faults is `pnpm chaos`.
 */
describe("production-shaped: faults under load lose, duplicate and let in nothing", () => {
  let bed: TestBed;

  beforeAll(async () => {
    bed = await startTestBed({
      pages: 10,
      peoplePerPage: 3,
      env: { PAGE_MESSAGE_RATE: "5", PAGE_MESSAGE_BURST: "20", SEND_RATE_PER_PAGE: "20" },
    });
  }, 180_000);

  afterAll(async () => {
    await bed?.stop();
  });

  for (const scenario of quickScenarios()) {
    it(scenario.name, async () => {
      const result = await runScenario(bed, scenario, {
        load: { messagesPerSecond: 10, sendsPerSecond: 2, seconds: 10 },
        recoveryTimeoutMs: 120_000,
      });
      expect(result.problems).toEqual([]);
      expect(result.stored).toBe(result.sent);
      expect(result.sent).toBeGreaterThan(50);
      expect(result.sendsSent).toBe(result.sendsQueued);
      expect(result.doubleSends).toBe(0);
      expect(result.deadLetters).toBe(0);
      expect(result.streamsNotR3).toBe(0);
      // The product's endpoint got every incoming message, each conversation in order.
      expect(result.webhooksDelivered).toBe(result.sent);
      expect(result.webhooksOutOfOrder).toBe(0);
    }, 240_000);
  }
});
