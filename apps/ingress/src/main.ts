import { connectBus } from "@switchboard/bus";
import { loadConfig } from "@switchboard/config";
import {
  closeServer,
  createLogger,
  createMetricsRegistry,
  listen,
  onShutdown,
  runMain,
} from "@switchboard/observability";
import { createIngressApp } from "./app";
import { ingressConfigSchema } from "./config";

runMain(async () => {
  const config = loadConfig(ingressConfigSchema);
  const log = createLogger({ service: "ingress", level: config.LOG_LEVEL });
  const registry = createMetricsRegistry("ingress");
  const bus = await connectBus({
    servers: config.NATS_URL,
    name: "ingress",
    namespace: config.BUS_NAMESPACE,
    log,
  });
  const app = createIngressApp({
    bus,
    log,
    registry,
    appSecret: config.FB_APP_SECRET,
    ...(config.INSTAGRAM_APP_SECRET ? { instagramAppSecret: config.INSTAGRAM_APP_SECRET } : {}),
    verifyToken: config.FB_VERIFY_TOKEN,
    bodyLimit: config.WEBHOOK_BODY_LIMIT,
    publishTimeoutMs: config.PUBLISH_TIMEOUT,
    replicas: config.NATS_STREAM_REPLICAS,
  });
  const server = await listen(app, config.PORT);
  log.info({ port: config.PORT, namespace: config.BUS_NAMESPACE }, "ingress listening");
  onShutdown(log, [
    // Requests in flight finish (their publishes are acknowledged) before the bus drains.
    { name: "stop accepting webhooks", run: () => closeServer(server) },
    { name: "drain NATS", run: () => bus.drain() },
  ]);
});
