import { rmSync } from "node:fs";
import { loadConfig } from "@switchboard/config";
import { runMain } from "@switchboard/observability";
import { FakeMetaResetConfig } from "./config";

/**
 * `pnpm fake-meta:reset`: forgets every page, token and person. A running fake Meta is asked to reset (it
 * then saves the empty state); when none answers, its state file is deleted.
 */
runMain(async () => {
  const config = loadConfig(FakeMetaResetConfig);
  const url = `http://127.0.0.1:${config.PORT}/_fake/reset`;
  const answer = await fetch(url, {
    method: "POST",
    headers: config.FAKE_META_CONTROL_TOKEN
      ? { authorization: `Bearer ${config.FAKE_META_CONTROL_TOKEN}` }
      : {},
    signal: AbortSignal.timeout(5000),
  }).catch(() => undefined);
  if (answer?.ok) {
    console.log(`reset the running fake Meta (${url})`);
    return;
  }
  if (answer) throw new Error(`${url} answered ${answer.status}: ${await answer.text()}`);
  if (config.FAKE_META_STATE_FILE) {
    rmSync(config.FAKE_META_STATE_FILE, { force: true });
    console.log(`no fake Meta on port ${config.PORT}: deleted ${config.FAKE_META_STATE_FILE}`);
  } else {
    console.log(`no fake Meta on port ${config.PORT} and no FAKE_META_STATE_FILE: nothing to reset`);
  }
});
