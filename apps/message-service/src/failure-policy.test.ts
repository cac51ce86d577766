import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Outcome } from "@switchboard/bus";
import { applyMigrations, createDb } from "@switchboard/db";
import { eventually, testServices, uniqueId } from "@switchboard/testing";
import { Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import { createTestWorld, events, type ServiceInstance } from "./test-support";

const PAGE = "100200300400500";

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  server.close();
  if (!address || typeof address === "string") throw new Error("no port");
  return address.port;
}

/** A redis-server of this test alone, on a free port in a temp dir: the shared Redis keeps running. */
async function startOwnRedis() {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), "sb-redis-"));
  const url = `redis://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;

  async function start() {
    child = spawn(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no"],
      { stdio: "ignore" },
    );
    const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on("error", () => undefined);
    await eventually(
      async () => {
        await probe.connect().catch(() => undefined);
        return (await probe.ping()) === "PONG";
      },
      { message: "own redis-server up" },
    );
    probe.disconnect();
  }

  async function stop() {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null) return;
    const exited = once(running, "exit");
    running.kill("SIGTERM");
    await exited;
  }

  await start();
  return {
    url,
    start,
    stop,
    async remove() {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function outcomes(service: ServiceInstance, outcome: Outcome) {
  const metric = await service.registry.getSingleMetric("switchboard_messaging_events_total")?.get();
  return (metric?.values ?? [])
    .filter((v) => v.labels.outcome === outcome)
    .reduce((sum, v) => sum + v.value, 0);
}

describe("failure policy", () => {
  it("rides out a Redis outage: events are redelivered with backoff and stored once Redis is back, none dead-lettered", async () => {
    const redis = await startOwnRedis();
    const world = await createTestWorld();
    try {
      const service = await world.startInstance({ redisUrl: redis.url });
      const now = Date.now();
      await world.publish(events.message(PAGE, "psid-redis-0", "m_redis_0", now));
      await eventually(async () => (await world.db.message.count({ where: { mid: "m_redis_0" } })) === 1);

      await redis.stop();
      const during = [1, 2, 3].map((i) => events.message(PAGE, `psid-redis-${i}`, `m_redis_${i}`, now + i));
      for (const event of during) await world.publish(event);
      // Each event failed about twice (the lock cannot be taken) and is waiting for its next delivery.
      await eventually(async () => (await outcomes(service, "retried")) >= 2 * during.length, {
        message: "events retried while Redis is down",
      });
      const stored = { mid: { in: during.map((e) => (e.kind === "message" ? e.mid : "")) } };
      expect(await world.db.message.count({ where: stored })).toBe(0);

      await redis.start();
      await eventually(async () => (await world.db.message.count({ where: stored })) === during.length, {
        timeoutMs: 20_000,
        message: "events stored after Redis came back",
      });
      await world.settled();
      expect(await world.deadLetters()).toHaveLength(0);
      expect(await outcomes(service, "dead_lettered")).toBe(0);
      expect(await outcomes(service, "acked")).toBe(1 + during.length);
    } finally {
      await world.close();
      await redis.remove();
    }
  });

  it("rides out a database outage: events wait for the database and are stored once, none dead-lettered", async () => {
    const world = await createTestWorld();
    // A database that does not exist yet: every transaction fails until it is created and migrated.
    const name = `sb_test_${uniqueId("")}`;
    const url = new URL(testServices().databaseUrl);
    url.pathname = `/${name}`;
    const late = createDb(url.toString());
    let service: ServiceInstance | undefined;
    try {
      service = await world.startInstance({ databaseUrl: url.toString() });
      const now = Date.now();
      const during = [1, 2, 3].map((i) => events.message(PAGE, `psid-db-${i}`, `m_db_${i}`, now + i));
      for (const event of during) await world.publish(event);
      await eventually(
        async () => (await outcomes(service as ServiceInstance, "retried")) >= 2 * during.length,
        {
          message: "events retried while the database is missing",
        },
      );

      await world.db.$executeRawUnsafe(`CREATE DATABASE ${name}`);
      await applyMigrations(url.toString());
      await eventually(async () => (await late.message.count()) === during.length, {
        timeoutMs: 20_000,
        message: "events stored once the database is there",
      });
      await world.settled();
      expect(await late.contact.count()).toBe(during.length);
      expect(await world.deadLetters()).toHaveLength(0);
      expect(await outcomes(service, "dead_lettered")).toBe(0);
      const created = (await world.domainEvents()).filter((e) => e.type === "message.created");
      expect(created).toHaveLength(during.length);
    } finally {
      await service?.stop();
      await late.$disconnect();
      await world.db.$executeRawUnsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await world.close();
    }
  });
});
