import { Redis } from "ioredis";

/** Deletes every key under `prefix` on each node (comma-separated URLs): a run leaves nothing in Redis. */
export async function deleteRedisKeys(redisUrls: string, prefix: string): Promise<void> {
  if (!prefix) return;
  for (const url of redisUrls.split(",")) {
    const redis = new Redis(url.trim(), {
      maxRetriesPerRequest: 1,
      lazyConnect: true,
      enableOfflineQueue: false,
    });
    redis.on("error", () => undefined);
    try {
      await redis.connect();
      let cursor = "0";
      do {
        const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 500);
        cursor = next;
        if (keys.length > 0) await redis.del(...keys);
      } while (cursor !== "0");
    } catch {
      // A node that is down (a chaos scenario) has nothing to clean that survives its restart.
    } finally {
      redis.disconnect();
    }
  }
}
