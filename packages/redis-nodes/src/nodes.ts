import { Redis } from "ioredis";
import type { Logger } from "pino";

export interface RedisNodesOptions {
  /** Shown by `CLIENT LIST` on each node. */
  connectionName: string;
  /**
   * Whether a command sent while a node reconnects waits for it (bounded by `maxRetriesPerRequest` and
   * `commandTimeout`). Off for clients used only through `createFailoverRedis`: it never sends to a node
   * that is not ready, and a command must fail at once rather than wait.
   */
  enableOfflineQueue?: boolean;
  /** A command unanswered this long fails (and the failover client tries the next node). */
  commandTimeoutMs?: number;
  /**
   * Commands issued in the same event-loop tick leave in one write (ioredis auto-pipelining): handlers
   * running side by side (a router's profile lookups) cost one socket write, not one each.
   */
  autoPipelining?: boolean;
}

/**
 * One client per Redis URL, in `REDIS_URL` order: independent nodes, not replicas. The conversation
 * lock uses them as Redlock nodes (a majority must agree); other state goes through
 * `createFailoverRedis`, which uses the first node that is up.
 * No ioredis `keyPrefix`: callers apply `REDIS_KEY_PREFIX` to their keys themselves, so the prefix is
 * visible in one place whatever the client options.
 */
export function connectRedisNodes(urls: string[], log: Logger, options: RedisNodesOptions): Redis[] {
  return urls.map((url, node) => {
    const client = new Redis(url, {
      // Fail a command after one reconnect attempt instead of queueing it for long: the message is
      // redelivered with backoff, which is where an outage is ridden out.
      maxRetriesPerRequest: 1,
      enableOfflineQueue: options.enableOfflineQueue ?? true,
      commandTimeout: options.commandTimeoutMs ?? 1000,
      connectionName: options.connectionName,
      enableAutoPipelining: options.autoPipelining ?? false,
    });
    client.on("error", (error) => log.warn({ err: error, node }, "redis error"));
    return client;
  });
}

/** Ready when a majority of nodes answers PING (what the conversation lock needs). */
export async function redisQuorumReady(clients: Redis[]): Promise<boolean> {
  const answers = await Promise.allSettled(clients.map((c) => c.ping()));
  const up = answers.filter((a) => a.status === "fulfilled").length;
  return up >= Math.floor(clients.length / 2) + 1;
}

export async function closeRedisNodes(clients: Redis[]): Promise<void> {
  // A node that is down cannot take QUIT: stop its reconnecting instead, or shutdown would hang on it.
  await Promise.allSettled(clients.map((c) => c.quit().catch(() => c.disconnect())));
}
