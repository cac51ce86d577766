import type { Bus } from "@switchboard/bus";
import type { Db } from "@switchboard/db";
import { type PingableRedis, type ReadinessCheck, redisReadiness } from "@switchboard/observability";

/**
 * What `/readyz` asks: NATS, PostgreSQL and Redis. Redis is in it because fair share and profiles go
 * through it: while it is down entries are held back, and the pod must not claim it is fine. Given the
 * failover client (`createFailoverRedis`), Redis is ready while any REDIS_URL node answers.
 */
export function pageRouterReadiness(deps: { bus: Bus; db: Db; redis: PingableRedis }): ReadinessCheck[] {
  return [
    { name: "nats", check: () => deps.bus.isConnected() },
    {
      name: "postgres",
      check: async () => {
        await deps.db.$queryRaw`SELECT 1`;
        return true;
      },
    },
    redisReadiness(deps.redis),
  ];
}
