import { Headers } from "@switchboard/contracts";
import { eventually } from "@switchboard/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestWorld, events, type ServiceInstance, type TestWorld } from "./test-support";

const PAGE = "100200300400500";
const MAX_ATTEMPTS = 5;
let world: TestWorld;
let service: ServiceInstance;

beforeAll(async () => {
  world = await createTestWorld();
  service = await world.startInstance({
    lockRetryDelayMs: 100,
    lockWaitRetries: 1,
    maxLockAttempts: MAX_ATTEMPTS,
  });
});

afterAll(async () => {
  await world?.close();
});

async function heldElsewhereCount() {
  const metric = await service.registry.getSingleMetric("switchboard_lock_failed_total")?.get();
  return metric?.values.find((v) => v.labels.reason === "held_elsewhere")?.value ?? 0;
}

describe("conversation lock", () => {
  it("redelivers a message whose conversation is locked by another holder, and stores it once the lock is free", async () => {
    const psid = "psid-locked-briefly";
    const key = service.lock.keyFor({ psid, pageId: PAGE });
    expect(key).toBe(`${world.keyPrefix}FB_MESSAGE_CREATE_LOCK::${psid}::${PAGE}`);
    const holder = world.redisNode();
    await holder.set(key, "another-replica", "PX", 30_000);

    await world.publish(events.message(PAGE, psid, "m_locked_1", Date.now()));
    await eventually(async () => (await heldElsewhereCount()) >= 2, { message: "two refused attempts" });
    expect(await world.db.message.count({ where: { mid: "m_locked_1" } })).toBe(0);

    await holder.del(key);
    await eventually(async () => (await world.db.message.count({ where: { mid: "m_locked_1" } })) === 1, {
      message: "row stored after the lock was released",
    });
    await world.settled();
    expect(await world.deadLetters()).toHaveLength(0);
  });

  it("dead-letters with the reason only after the tries run out", async () => {
    const psid = "psid-locked-for-good";
    const holder = world.redisNode();
    await holder.set(service.lock.keyFor({ psid, pageId: PAGE }), "stuck-replica", "PX", 60_000);
    const before = await heldElsewhereCount();

    await world.publish(events.message(PAGE, psid, "m_locked_2", Date.now()));
    const [dead] = await eventually(async () => {
      const letters = await world.deadLetters();
      return letters.length > 0 && letters;
    });
    expect(dead?.reason).toContain(
      `conversation lock held elsewhere: ${service.lock.keyFor({ psid, pageId: PAGE })}`,
    );
    expect(dead?.reason).toContain(`gave up after ${MAX_ATTEMPTS} attempts`);
    expect(dead?.headers[Headers.deliveries]).toBe(String(MAX_ATTEMPTS));
    expect((await heldElsewhereCount()) - before).toBe(MAX_ATTEMPTS);
    expect(await world.db.message.count({ where: { mid: "m_locked_2" } })).toBe(0);
  });
});
