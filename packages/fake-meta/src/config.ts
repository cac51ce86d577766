import { env } from "@switchboard/config";
import { z } from "zod";

const emptyAsUndefined = (v: unknown) => (v === "" ? undefined : v);

export const FakeMetaConfig = z.object({
  // Checked first: a test double that signs webhooks with the app secret must never run in production.
  NODE_ENV: z
    .preprocess(emptyAsUndefined, z.string().optional())
    .refine(
      (v) => v !== "production",
      "the fake Meta is a test double and refuses to run with NODE_ENV=production (use development or test)",
    ),
  PORT: env.port(4000),
  FB_APP_SECRET: env.secret(),
  FB_APP_ID: z.string().regex(/^\d+$/, "digits only"),
  /** The Instagram app's id (the Instagram host's `GET subscribed_apps` names it); `FB_APP_ID` when unset. */
  INSTAGRAM_APP_ID: z.preprocess(emptyAsUndefined, z.string().regex(/^\d+$/, "digits only").optional()),
  INGRESS_URL: env.httpUrl("http://127.0.0.1:3000/webhooks/facebook"),
  GRAPH_API_VERSION: env.graphApiVersion(),
  /** When the Send API's echo webhook goes out relative to its HTTP answer. */
  FAKE_META_ECHO_MODE: z.preprocess(
    emptyAsUndefined,
    z.enum(["before", "after", "random", "off"]).default("random"),
  ),
  /** Bearer token of the control API (`/_fake/*`); generated and printed at start when unset. */
  FAKE_META_CONTROL_TOKEN: z.preprocess(emptyAsUndefined, env.secret(16).optional()),
  /** JSON file keeping pages, tokens and people across restarts (e.g. `.data/fake-meta.json`); none when unset. */
  FAKE_META_STATE_FILE: z.preprocess(emptyAsUndefined, z.string().optional()),
  LOG_LEVEL: env.logLevel(),
});
export type FakeMetaConfig = z.infer<typeof FakeMetaConfig>;

/** What `pnpm fake-meta:reset` needs: where the running fake listens, its control token, its state file. */
export const FakeMetaResetConfig = FakeMetaConfig.pick({
  PORT: true,
  FAKE_META_CONTROL_TOKEN: true,
  FAKE_META_STATE_FILE: true,
});
