import { type RedisNodes, startRedisNodes } from "@switchboard/local-system";
import { Redis } from "ioredis";
import pino from "pino";
import { RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createFailoverRedis, RedisUnavailableError } from "./failover";
import { closeRedisNodes, connectRedisNodes } from "./nodes";

const log = pino({ level: "silent" });
let cluster: RedisNodes;
let clients: Redis[];
let redis: Redis;

const untilReady = (client: Redis, timeoutMs = 10_000) =>
  new Promise<void>((resolve, reject) => {
    if (client.status === "ready") return resolve();
    const timer = setTimeout(() => reject(new Error(`node not ready within ${timeoutMs} ms`)), timeoutMs);
    client.once("ready", () => {
      clearTimeout(timer);
      resolve();
    });
  });

/** Which node holds a key: asked of each node directly, not through the failover client. */
const holders = async (key: string) => {
  const found: number[] = [];
  for (const [node, client] of clients.entries()) {
    if (client.status === "ready" && (await client.exists(key))) found.push(node);
  }
  return found;
};

beforeAll(async () => {
  cluster = await startRedisNodes(3);
  clients = connectRedisNodes(
    cluster.nodes.map((n) => n.url),
    log,
    { connectionName: "redis-nodes-test", enableOfflineQueue: false },
  );
  await Promise.all(clients.map((c) => untilReady(c)));
  redis = createFailoverRedis(clients, log);
}, 30_000);

afterAll(async () => {
  await closeRedisNodes(clients);
  await cluster.stop();
});

beforeEach(async () => {
  for (const node of cluster.nodes) await node.start();
  await Promise.all(clients.map((c) => untilReady(c)));
  await Promise.all(clients.map((c) => c.flushall()));
}, 20_000);

describe("createFailoverRedis", () => {
  it("sends every kind of command the services use to node 0 while it is up", async () => {
    expect(await redis.set("k", "v", "PX", 60_000, "NX")).toBe("OK");
    expect(await redis.get("k")).toBe("v");
    expect(await redis.mget("k", "missing")).toEqual(["v", null]);
    expect(await redis.incr("n")).toBe(1);
    expect(await redis.pexpire("n", 60_000)).toBe(1);
    expect(await redis.exists("n")).toBe(1);
    expect(await redis.eval("return redis.call('INCRBY', KEYS[1], ARGV[1])", 1, "e", "5")).toBe(5);
    const [[, total]] = (await redis.multi().incrby("m", 3).pexpire("m", 60_000).exec()) as [
      [Error | null, number],
    ];
    expect(total).toBe(3);
    expect(await redis.pipeline().get("k").pttl("k").exec()).toEqual([
      [null, "v"],
      [null, expect.any(Number)],
    ]);
    for (const key of ["k", "n", "e", "m"]) expect(await holders(key)).toEqual([0]);
    expect(await redis.del("k")).toBe(1);
    expect(redis.status).toBe("ready");
  });

  it("moves to node 1 within a second when node 0 is killed, and back once node 0 returns", async () => {
    await redis.set("before", "1");
    await cluster.nodes[0]!.kill();
    const started = Date.now();
    expect(await redis.incr("during")).toBe(1);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(await holders("during")).toEqual([1]);
    // What was on node 0 is gone with it: the state is rebuilt on node 1, not copied.
    expect(await redis.get("before")).toBeNull();
    expect(redis.status).toBe("ready");

    await cluster.nodes[0]!.start();
    await untilReady(clients[0]!);
    await redis.set("after", "1");
    expect(await holders("after")).toEqual([0]);
  }, 20_000);

  it("retries a command in flight on the next node when its node dies under it", async () => {
    // A script that keeps node 0 busy long enough to kill it while the reply is awaited.
    const busy = redis.eval(
      "local i = 0 while i < 30000000 do i = i + 1 end return redis.call('INCR', KEYS[1])",
      1,
      "inflight",
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    await cluster.nodes[0]!.kill();
    expect(await busy).toBe(1);
    expect(await holders("inflight")).toEqual([1]);
  }, 20_000);

  it("passes over a node that stops answering: one command waits for the timeout, the next do not", async () => {
    // Node 0 stays connected but answers nothing for a few seconds (a busy script, as a stalled host).
    const blocker = new Redis(cluster.nodes[0]!.url);
    const stall = blocker.eval("local i = 0 while i < 300000000 do i = i + 1 end return 1", 0);
    await new Promise((resolve) => setTimeout(resolve, 50));
    try {
      let started = Date.now();
      expect(await redis.incr("stalled")).toBe(1);
      expect(Date.now() - started).toBeGreaterThanOrEqual(900); // the 1 s command timeout
      expect(await clients[1]!.get("stalled")).toBe("1");
      started = Date.now();
      await redis.set("next", "1");
      expect(Date.now() - started).toBeLessThan(200);
      expect(await clients[1]!.get("next")).toBe("1");
    } finally {
      await stall.catch(() => undefined);
      await blocker.quit();
    }
  }, 20_000);

  it("fails with a clear error, at once, when every node is down", async () => {
    await Promise.all(cluster.nodes.map((n) => n.kill()));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const started = Date.now();
    const error = await redis.get("x").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RedisUnavailableError);
    expect((error as Error).message).toMatch(
      /no Redis node is connected \(node 0: \w+, node 1: \w+, node 2: \w+\)/,
    );
    expect(Date.now() - started).toBeLessThan(100);
    await expect(redis.multi().incr("x").exec()).rejects.toBeInstanceOf(RedisUnavailableError);
    expect(redis.status).not.toBe("ready");
  }, 20_000);

  it("passes a reply error through without trying another node", async () => {
    await redis.set("text", "not a number");
    await expect(redis.incr("text")).rejects.toThrow(/not an integer/);
    expect(await holders("text")).toEqual([0]);
  });

  it("carries rate-limiter-flexible's RateLimiterRedis (defineCommand) over to the next node", async () => {
    const limiter = new RateLimiterRedis({
      storeClient: redis,
      keyPrefix: "bucket",
      points: 2,
      duration: 60,
    });
    await limiter.consume("page");
    await limiter.consume("page");
    await expect(limiter.consume("page")).rejects.toBeInstanceOf(RateLimiterRes);
    expect(await holders("bucket:page")).toEqual([0]);

    await cluster.nodes[0]!.kill();
    // Node 1 has no bucket yet: the window restarts there (one extra burst), then limits again.
    await limiter.consume("page");
    await limiter.consume("page");
    await expect(limiter.consume("page")).rejects.toBeInstanceOf(RateLimiterRes);
    expect(await holders("bucket:page")).toEqual([1]);
  }, 20_000);
});
