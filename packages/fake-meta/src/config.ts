import { env } from "@switchboard/config";
import { z } from "zod";

export const FakeMetaConfig = z.object({
  PORT: env.port(4000),
  FB_APP_SECRET: env.secret(),
  FB_APP_ID: z.string().regex(/^\d+$/, "digits only"),
  INGRESS_URL: env.httpUrl("http://127.0.0.1:3000/webhooks/facebook"),
  GRAPH_API_VERSION: env.graphApiVersion(),
  /** When the Send API's echo webhook goes out relative to its HTTP answer. */
  FAKE_META_ECHO_MODE: z.preprocess(
    (v) => (v === "" ? undefined : v),
    z.enum(["before", "after", "random", "off"]).default("random"),
  ),
  LOG_LEVEL: env.logLevel(),
});
export type FakeMetaConfig = z.infer<typeof FakeMetaConfig>;
