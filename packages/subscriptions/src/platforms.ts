import { env, graphEnvShape, graphHostsOf } from "@switchboard/config";
import { createGraphClients, type GraphClientOptions } from "@switchboard/graph-api";
import { z } from "zod";
import {
  DEFAULT_SUBSCRIBED_FIELDS,
  INSTAGRAM_DEFAULT_SUBSCRIBED_FIELDS,
  subscribedFieldsEnv,
} from "./fields";
import type { SubscriptionContext } from "./subscription";

const appId = (what: string) => z.string({ error: "required" }).regex(/^\d+$/, what);

/**
 * The variables of everything that subscribes connections (the subscription-service, the console, the
 * CLI), for both platforms. Instagram Login apps have their own id and secret (INSTAGRAM_APP_ID,
 * INSTAGRAM_APP_SECRET); unset, the Facebook app's are used.
 */
export const subscriptionEnvShape = {
  ...graphEnvShape,
  FB_APP_ID: appId("the numeric Meta app id"),
  INSTAGRAM_APP_ID: z.preprocess(
    (v) => (v === "" ? undefined : v),
    appId(
      "the numeric Instagram app id (App Dashboard → Instagram → API setup with Instagram login)",
    ).optional(),
  ),
  GRAPH_API_TIMEOUT: env.duration("10s"),
  /** Webhook fields every Page is subscribed to (comma list; default: every Messenger event). */
  SUBSCRIBED_FIELDS: subscribedFieldsEnv(DEFAULT_SUBSCRIBED_FIELDS),
  /** Webhook fields every Instagram account is subscribed to (Instagram's names). */
  INSTAGRAM_SUBSCRIBED_FIELDS: subscribedFieldsEnv(INSTAGRAM_DEFAULT_SUBSCRIBED_FIELDS),
};

export type SubscriptionEnv = z.infer<z.ZodObject<typeof subscriptionEnvShape>>;

/** Each platform's Graph client, app and fields, as a SubscriptionContext holds them. */
export function platformSubscriptionsOf(
  config: SubscriptionEnv,
  client: Omit<GraphClientOptions, "platform" | "baseUrl" | "version" | "appSecret"> = {},
): Pick<SubscriptionContext, "graph" | "appId" | "desiredFields" | "instagram"> {
  const graphs = createGraphClients(graphHostsOf(config), { timeoutMs: config.GRAPH_API_TIMEOUT, ...client });
  return {
    graph: graphs.messenger,
    appId: config.FB_APP_ID,
    desiredFields: config.SUBSCRIBED_FIELDS,
    instagram: {
      graph: graphs.instagram,
      appId: config.INSTAGRAM_APP_ID ?? config.FB_APP_ID,
      desiredFields: config.INSTAGRAM_SUBSCRIBED_FIELDS,
    },
  };
}
