import type { Bus } from "@switchboard/bus";
import { createOpsRouter, type Logger, type Registry } from "@switchboard/observability";
import express, { type Express } from "express";
import { createIngressMetrics } from "./metrics";
import { mountWebhookRoutes } from "./webhook";

export interface IngressDeps {
  bus: Bus;
  log: Logger;
  registry: Registry;
  appSecret: string;
  /** INSTAGRAM_APP_SECRET, when the Instagram Login app has its own: its signatures are accepted too. */
  instagramAppSecret?: string;
  verifyToken: string;
  bodyLimit?: string;
  publishTimeoutMs?: number;
  /** JetStream replicas (NATS_STREAM_REPLICAS), for the large-entries bucket. */
  replicas?: number;
}

/** Readiness: connected to NATS and the webhooks stream exists (checked at most every 5 s). */
function webhookStreamCheck(bus: Bus) {
  let checkedAt = 0;
  let present = false;
  return async () => {
    if (!bus.isConnected()) return false;
    if (Date.now() - checkedAt > 5000) {
      present = await bus.jsm.streams
        .info(bus.topology.streams.webhooks.name)
        .then(() => true)
        .catch(() => false);
      checkedAt = Date.now();
    }
    return present;
  };
}

export function createIngressApp(deps: IngressDeps): Express {
  const app = express();
  app.disable("x-powered-by");
  app.disable("etag");
  // On the app itself, not a nested Router: one routing layer fewer on the hot path (pnpm bench).
  mountWebhookRoutes(app, {
    appSecret: deps.appSecret,
    ...(deps.instagramAppSecret ? { instagramAppSecret: deps.instagramAppSecret } : {}),
    verifyToken: deps.verifyToken,
    bus: deps.bus,
    log: deps.log,
    metrics: createIngressMetrics(deps.registry),
    bodyLimit: deps.bodyLimit ?? "5mb",
    publishTimeoutMs: deps.publishTimeoutMs ?? 3000,
    replicas: deps.replicas ?? 1,
  });
  app.use(
    createOpsRouter({
      registry: deps.registry,
      checks: [{ name: "webhook stream", check: webhookStreamCheck(deps.bus) }],
    }),
  );
  return app;
}
