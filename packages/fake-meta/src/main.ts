import { loadConfig } from "@switchboard/config";
import { createLogger, onShutdown, runMain } from "@switchboard/observability";
import { createFakeMeta } from "./app";
import { FakeMetaConfig } from "./config";

runMain(async () => {
  const config = loadConfig(FakeMetaConfig);
  const log = createLogger({ service: "fake-meta", level: config.LOG_LEVEL });
  const fake = createFakeMeta({
    appSecret: config.FB_APP_SECRET,
    appId: config.FB_APP_ID,
    ...(config.INSTAGRAM_APP_ID ? { instagramAppId: config.INSTAGRAM_APP_ID } : {}),
    ingressUrl: config.INGRESS_URL,
    graphApiVersion: config.GRAPH_API_VERSION,
    echoMode: config.FAKE_META_ECHO_MODE,
    ...(config.FAKE_META_CONTROL_TOKEN ? { controlToken: config.FAKE_META_CONTROL_TOKEN } : {}),
    ...(config.FAKE_META_STATE_FILE ? { stateFile: config.FAKE_META_STATE_FILE } : {}),
    log,
  });
  if (!config.FAKE_META_CONTROL_TOKEN) {
    // Development only (production refuses to start): the token has to reach whoever drives the fake.
    log.warn({ controlToken: fake.controlToken }, "FAKE_META_CONTROL_TOKEN is not set: generated one");
  }
  const server = await fake.listen(config.PORT, "0.0.0.0");
  log.info(
    {
      port: config.PORT,
      ingressUrl: config.INGRESS_URL,
      instagramAppId: config.INSTAGRAM_APP_ID ?? config.FB_APP_ID,
      version: config.GRAPH_API_VERSION,
      stateFile: config.FAKE_META_STATE_FILE,
      pages: fake.state.listPages().length,
    },
    "fake meta listening",
  );
  onShutdown(log, [{ name: "http", run: () => server.close() }]);
});
