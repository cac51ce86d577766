import type { DomainEvent } from "@switchboard/contracts";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createOutboxPublisher, type OutboxRow, outboxRow } from "./domain-events";
import { createTestWorld, type TestWorld } from "./test-support";

const PAGE = "120130140150160";
let world: TestWorld;

beforeAll(async () => {
  world = await createTestWorld();
});

afterAll(async () => {
  await world?.close();
});

function outboxRowFor(n: number): OutboxRow {
  const event: DomainEvent = {
    type: "conversation.created",
    conversationId: `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`,
    pageId: PAGE,
    platform: "messenger",
    psid: `psid-${n}`,
    occurredAt: 1_700_000_000_000 + n,
  };
  return outboxRow(world.bus.topology, event);
}

it("publishes each handler's rows once and resolves only when they are gone from the outbox (handlers running side by side)", async () => {
  const publish = createOutboxPublisher(world.bus.js, world.db);
  const rows = Array.from({ length: 40 }, (_, n) => outboxRowFor(n));
  await world.db.domainEventOutbox.createMany({
    data: rows.map((r) => ({ id: r.id, subject: r.subject, payload: r.payload })),
  });

  const leftWhenResolved = await Promise.all(
    rows.map(async (row) => {
      await publish([row]);
      return world.db.domainEventOutbox.count({ where: { id: row.id } });
    }),
  );

  expect(leftWhenResolved.every((n) => n === 0)).toBe(true);
  expect(await world.db.domainEventOutbox.count()).toBe(0);
  const published = await world.domainEvents();
  expect(published.map((e) => (e.type === "conversation.created" ? e.psid : "")).sort()).toEqual(
    rows.map((r) => ("psid" in r.payload ? r.payload.psid : "")).sort(),
  );
});
