import type { Server } from "node:http";
import express, { type Express, type Router } from "express";
import type { Registry } from "prom-client";

/** A readiness check names what it checks; it returns true when ready or throws/returns false. */
export type ReadinessCheck = { name: string; check: () => boolean | Promise<boolean> };

/** What a readiness check needs of a Redis client (ioredis's `status` and `ping`). */
export interface PingableRedis {
  status?: string;
  ping(): Promise<string>;
}

/**
 * Readiness of Redis: a PING answered within `timeoutMs`. While the client is not connected it fails at
 * once (a PING would wait in the offline queue). The answer is kept for `cacheMs`, and one PING serves
 * every probe that arrives meanwhile, so probes and scrapes do not each cost a round trip.
 */
export function redisReadiness(
  redis: PingableRedis,
  { timeoutMs = 500, cacheMs = 1000 }: { timeoutMs?: number; cacheMs?: number } = {},
): ReadinessCheck {
  let answer: { at: number; ready: Promise<boolean> } | undefined;
  const ping = async () => {
    if (redis.status !== undefined && redis.status !== "ready") return false;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const pong = redis.ping().then(
      (reply) => reply === "PONG",
      () => false,
    );
    return Promise.race([pong, late]).finally(() => clearTimeout(timer));
  };
  return {
    name: "redis",
    check: () => {
      if (!answer || Date.now() - answer.at > cacheMs) answer = { at: Date.now(), ready: ping() };
      return answer.ready;
    },
  };
}

/** `/healthz` (the process runs), `/readyz` (its dependencies answer) and `/metrics` (Prometheus). */
export function createOpsRouter({
  registry,
  checks,
}: {
  registry: Registry;
  checks: ReadinessCheck[];
}): Router {
  const router = express.Router();
  router.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });
  router.get("/readyz", async (_req, res) => {
    const results = await Promise.all(
      checks.map(async ({ name, check }) => {
        try {
          return { name, ok: (await check()) === true };
        } catch (error) {
          return { name, ok: false, error: (error as Error).message };
        }
      }),
    );
    const ready = results.every((r) => r.ok);
    res.status(ready ? 200 : 503).json({ status: ready ? "ready" : "not_ready", checks: results });
  });
  router.get("/metrics", async (_req, res) => {
    res.type(registry.contentType).send(await registry.metrics());
  });
  return router;
}

export function createOpsApp(options: { registry: Registry; checks: ReadinessCheck[] }): Express {
  const app = express();
  app.disable("x-powered-by");
  app.use(createOpsRouter(options));
  return app;
}

export function listen(app: Express, port: number, host = "0.0.0.0"): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = app.listen(port, host, (error?: Error) => (error ? reject(error) : resolve(server)));
  });
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}
