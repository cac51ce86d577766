import type { Bus } from "@switchboard/bus";
import type { TokenCipher } from "@switchboard/crypto";
import type { Db } from "@switchboard/db";
import { type GraphClient, graphFailurePolicy } from "@switchboard/graph-api";
import { decryptPageToken, replaceRefreshedToken, setPageStatus } from "@switchboard/pages";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { SubscriptionMetrics } from "./metrics";

/** Meta refuses to refresh a token less than 24 hours old. */
const MIN_TOKEN_AGE_MS = 24 * 3_600_000;

export type TokenRefreshOutcome =
  | "not_due"
  | "refreshed"
  /** An operator reconnected the account meanwhile: their token stays. */
  | "superseded"
  /** Another replica is refreshing it. */
  | "busy"
  /** Meta refused the token: the account needs re-authorisation. */
  | "rejected"
  | "expired"
  /** A passing failure (Meta unavailable, rate limit): the next check tries again. */
  | "failed";

export interface TokenRefreshDeps {
  db: Db;
  bus: Bus;
  cipher: TokenCipher;
  /** The Instagram API client. */
  graph: GraphClient;
  redis: Redis;
  keyPrefix: string;
  log: Logger;
  metrics: SubscriptionMetrics;
  /** Refresh once the token expires within this (INSTAGRAM_TOKEN_REFRESH_BEFORE). */
  refreshBeforeMs: number;
  now?: () => number;
}

/**
 * Keeps an Instagram account's long-lived token alive: 60 days from issue or refresh, refreshed with
 * `GET /refresh_access_token?grant_type=ig_refresh_token` once it expires within `refreshBeforeMs` (or,
 * expiry unknown, once it is a day old, which also learns its expiry), re-encrypted in place. A token
 * Meta refuses, or one already expired, moves the account to `reauthorization_required` (alerted, as a
 * page's would be). The token is decrypted here for the call only, never logged or published.
 */
export async function refreshInstagramTokenIfDue(
  deps: TokenRefreshDeps,
  pageId: string,
): Promise<TokenRefreshOutcome> {
  const now = deps.now?.() ?? Date.now();
  const page = await deps.db.pageConnection.findUnique({ where: { pageId } });
  if (!page || page.platform !== "instagram" || page.status !== "active") return "not_due";
  const count = (outcome: TokenRefreshOutcome) => {
    deps.metrics.tokenRefreshes.inc({ outcome });
    return outcome;
  };

  const expiresAt = page.tokenExpiresAt?.getTime();
  if (expiresAt !== undefined && expiresAt <= now) {
    await setPageStatus(
      deps,
      pageId,
      "reauthorization_required",
      `the Instagram token expired on ${new Date(expiresAt).toISOString()}: reconnect the account (pnpm sb pages connect --platform instagram)`,
    );
    return count("expired");
  }
  const issuedAt = (page.tokenRefreshedAt ?? page.tokenObtainedAt ?? page.createdAt).getTime();
  const due = expiresAt === undefined || expiresAt - now < deps.refreshBeforeMs;
  if (!due || now - issuedAt < MIN_TOKEN_AGE_MS) return "not_due";

  // One replica refreshes; the others see the new token at their next check.
  const lock = `${deps.keyPrefix}token-refresh:${pageId}`;
  if ((await deps.redis.set(lock, "1", "PX", 60_000, "NX")) !== "OK") return "busy";
  try {
    const token = decryptPageToken(deps.cipher, pageId, page.pageAccessTokenEnc);
    let refreshed: { access_token: string; expires_in: number };
    try {
      refreshed = await deps.graph.refreshInstagramToken(token, { pageId });
    } catch (error) {
      const policy = graphFailurePolicy(error);
      if (!policy) throw error;
      if (policy.action === "reauthorize") {
        await setPageStatus(
          deps,
          pageId,
          "reauthorization_required",
          `Meta refused to refresh the Instagram token (code ${policy.error.code ?? "?"}): reconnect the account (pnpm sb pages connect --platform instagram)`,
        );
        deps.log.error({ pageId, code: policy.error.code }, "Instagram token refresh rejected");
        return count("rejected");
      }
      deps.log.warn({ pageId, kind: policy.error.kind }, "Instagram token refresh failed, will retry");
      return count("failed");
    }
    const stored = await replaceRefreshedToken(deps, {
      pageId,
      previousTokenEnc: page.pageAccessTokenEnc,
      token: refreshed.access_token,
      expiresAt: new Date(now + refreshed.expires_in * 1000),
    });
    deps.log.info(
      { pageId, expiresInDays: Math.round(refreshed.expires_in / 86_400) },
      "Instagram token refreshed",
    );
    return count(stored ? "refreshed" : "superseded");
  } finally {
    await deps.redis.del(lock).catch(() => undefined);
  }
}
