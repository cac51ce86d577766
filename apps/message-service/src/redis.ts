import { Redis } from "ioredis";
import type { Logger } from "pino";

/**
 * One client per Redis URL: each is an independent Redlock node (several nodes give a quorum).
 * No ioredis `keyPrefix`: the conversation lock applies `REDIS_KEY_PREFIX` to its keys itself, so the
 * prefix is visible in one place whatever the client options.
 */
export function connectRedisNodes(urls: string[], log: Logger): Redis[] {
  return urls.map((url, node) => {
    const client = new Redis(url, {
      // Fail a command after one reconnect attempt instead of queueing it for long: the message is
      // redelivered with backoff, which is where an outage is ridden out.
      maxRetriesPerRequest: 1,
      connectionName: "message-service",
    });
    client.on("error", (error) => log.warn({ err: error, node }, "redis error"));
    return client;
  });
}

/** Ready when a quorum of nodes answers PING. */
export async function redisQuorumReady(clients: Redis[]): Promise<boolean> {
  const answers = await Promise.allSettled(clients.map((c) => c.ping()));
  const up = answers.filter((a) => a.status === "fulfilled").length;
  return up >= Math.floor(clients.length / 2) + 1;
}

export async function closeRedisNodes(clients: Redis[]): Promise<void> {
  await Promise.allSettled(clients.map((c) => c.quit()));
}
