import type { Bus } from "@switchboard/bus";
import {
  type ContactProfile,
  NO_PERSON_PSID,
  type Platform,
  USER_REF_PSID_PREFIX,
} from "@switchboard/contracts";
import type { TokenCipher } from "@switchboard/crypto";
import type { Db } from "@switchboard/db";
import {
  createGraphClients,
  type GraphCallRecord,
  graphFailurePolicy,
  type UserProfile,
} from "@switchboard/graph-api";
import type { Logger } from "@switchboard/observability";
import { decryptPageToken, setPageStatus } from "@switchboard/pages";
import type { Redis } from "ioredis";
import { RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import type { PageRouterMetrics } from "./metrics";
import type { PageDirectory, RoutablePage } from "./page-directory";

export type ProfileResult = {
  profile: ContactProfile | null;
  status: "fetched" | "cached" | "unavailable" | "not_requested";
};

export interface ProfileSettings {
  /** Pages on the Facebook Graph API, Instagram accounts on the Instagram API, each with its own secret. */
  graph: Record<Platform, { baseUrl: string; version: string; appSecret: string }>;
  keyPrefix: string;
  staleAfterMs: number;
  unavailableTtlMs: number;
  timeoutMs: number;
  callsPerPage: number;
  callsWindowMs: number;
  usageBackoffPercent: number;
  backoffMs: number;
}

export interface ProfileDeps {
  db: Db;
  bus: Bus;
  redis: Redis;
  cipher: TokenCipher;
  directory: PageDirectory;
  log: Logger;
  metrics: PageRouterMetrics;
  settings: ProfileSettings;
}

/** What Redis keeps per (page, PSID): the profile, or that Meta would not give one, and when. */
interface StoredProfile {
  profile: ContactProfile | null;
  fetchedAt: number;
}

export interface ProfileLookup {
  /** Never throws and never waits longer than the Graph timeout: a message goes on without a profile. */
  profileFor(page: RoutablePage, psid: string): Promise<ProfileResult>;
}

/**
 * Profiles for incoming messages, cached per (page, PSID) in Redis and fetched with that page's own token.
 * Graph calls per page go through a token bucket every replica shares, and pause for that page alone
 * when Meta reports a rate limit or high usage (https://developers.facebook.com/docs/graph-api/overview/rate-limiting).
 */
export function createProfileLookup(deps: ProfileDeps): ProfileLookup {
  const { redis, cipher, log, metrics, settings } = deps;
  const key = {
    profile: (pageId: string, psid: string) => `${settings.keyPrefix}profile:${pageId}:${psid}`,
    backoff: (pageId: string) => `${settings.keyPrefix}graph:backoff:${pageId}`,
  };

  const backOff = async (pageId: string, ms: number, reason: "rate_limit_error" | "high_usage") => {
    // NX keeps the first (usually longest) pause instead of extending it on every call.
    const set = await redis.set(key.backoff(pageId), reason, "PX", Math.max(1, Math.round(ms)), "NX");
    if (set === "OK") {
      metrics.graphBackoffs.inc({ page_id: pageId, reason });
      log.warn({ pageId, reason, backoffMs: ms }, "pausing Graph calls for page");
    }
  };

  const onCall = (call: GraphCallRecord) => {
    const pageId = call.pageId ?? "unknown";
    metrics.graphCalls.inc({ page_id: pageId, endpoint: call.endpoint, outcome: call.outcome });
    metrics.graphCallSeconds.observe({ endpoint: call.endpoint }, call.durationMs / 1000);
    const percent = call.usage.maxPercent;
    if (percent === undefined || !call.pageId) return;
    metrics.graphUsage.set({ page_id: pageId }, percent);
    if (percent >= settings.usageBackoffPercent) {
      const regain = call.usage.estimatedTimeToRegainAccessMinutes;
      void backOff(pageId, regain ? regain * 60_000 : settings.backoffMs, "high_usage").catch(
        () => undefined,
      );
    }
  };

  const graphs = createGraphClients(settings.graph, {
    timeoutMs: settings.timeoutMs,
    // One attempt: a retry would hold the message back; the next message from this person tries again.
    maxRetries: 0,
    onCall,
  });

  const limiter = new RateLimiterRedis({
    storeClient: redis,
    keyPrefix: `${settings.keyPrefix}graph:bucket`,
    points: settings.callsPerPage,
    duration: Math.max(1, Math.round(settings.callsWindowMs / 1000)),
  });

  const inFlight = new Map<string, Promise<ProfileResult>>();

  const skipped = (pageId: string, reason: string, stored: StoredProfile | null): ProfileResult => {
    metrics.graphThrottled.inc({ page_id: pageId, reason });
    return fromStore(stored) ?? { profile: null, status: "unavailable" };
  };

  const fetchProfile = async (page: RoutablePage, psid: string): Promise<ProfileResult> => {
    const { pageId } = page;
    let stored: StoredProfile | null = null;
    try {
      stored = parseStored(await redis.get(key.profile(pageId, psid)));
      if (stored && Date.now() - stored.fetchedAt < freshFor(stored)) return fromStore(stored)!;
      if (page.status !== "active") return skipped(pageId, "page_inactive", stored);
      if (await redis.exists(key.backoff(pageId))) return skipped(pageId, "backing_off", stored);
      await limiter.consume(pageId);
    } catch (error) {
      if (error instanceof RateLimiterRes) return skipped(pageId, "rate_limited", stored);
      log.warn({ pageId, err: error }, "profile cache unavailable, skipping profile");
      return skipped(pageId, "store_unavailable", stored);
    }

    try {
      const token = decryptPageToken(cipher, pageId, page.pageAccessTokenEnc);
      const answer = await graphs[page.platform].getUserProfile(psid, token, { pageId });
      const profile = contactProfileOf(answer);
      await save(pageId, psid, { profile, fetchedAt: Date.now() });
      return { profile, status: "fetched" };
    } catch (error) {
      await onFailure(page, psid, error);
      return fromStore(stored) ?? { profile: null, status: "unavailable" };
    }
  };

  const save = async (pageId: string, psid: string, value: StoredProfile) => {
    const keepMs = value.profile ? settings.staleAfterMs * 7 : settings.unavailableTtlMs;
    await redis
      .set(key.profile(pageId, psid), JSON.stringify(value), "PX", Math.max(1, keepMs))
      .catch((err: unknown) => log.warn({ pageId, err }, "could not cache profile"));
  };

  const freshFor = (stored: StoredProfile) =>
    stored.profile ? settings.staleAfterMs : settings.unavailableTtlMs;

  /** The one Graph-failure policy (`graphFailurePolicy`), applied to a profile lookup. */
  const onFailure = async (page: RoutablePage, psid: string, error: unknown) => {
    const { pageId } = page;
    const policy = graphFailurePolicy(error, { defaultBackoffMs: settings.backoffMs });
    switch (policy?.action) {
      case "reauthorize":
        log.error(
          { pageId, code: policy.error.code },
          "page token rejected by Meta: page needs re-authorisation",
        );
        deps.directory.invalidate(pageId);
        await setPageStatus(
          { db: deps.db, bus: deps.bus },
          pageId,
          "reauthorization_required",
          `Graph API rejected the page token (code ${policy.error.code ?? "?"}) while fetching a profile`,
        ).catch((err: unknown) => log.error({ pageId, err }, "could not mark page for re-authorisation"));
        return;
      case "back_off":
        await backOff(pageId, policy.retryAfterMs, "rate_limit_error").catch(() => undefined);
        return;
      case "give_up":
        // This person cannot be looked up (blocked the page, privacy, deleted): do not ask on every message.
        log.info(
          { pageId, kind: policy.error.kind, code: policy.error.code },
          "profile not available for this person",
        );
        await save(pageId, psid, { profile: null, fetchedAt: Date.now() });
        return;
      default:
        log.warn({ pageId, err: policy ? policy.error.toJSON() : error }, "profile fetch failed");
    }
  };

  return {
    async profileFor(page, psid) {
      if (psid.startsWith(USER_REF_PSID_PREFIX) || psid === NO_PERSON_PSID)
        return { profile: null, status: "not_requested" };
      const flightKey = `${page.pageId}:${psid}`;
      let running = inFlight.get(flightKey);
      if (!running) {
        running = fetchProfile(page, psid).finally(() => inFlight.delete(flightKey));
        inFlight.set(flightKey, running);
      }
      return running;
    },
  };
}

function contactProfileOf(answer: UserProfile): ContactProfile {
  return {
    firstName: answer.first_name ?? null,
    lastName: answer.last_name ?? null,
    profilePicUrl: answer.profile_pic ?? null,
    name: answer.name ?? null,
    username: answer.username ?? null,
  };
}

function parseStored(text: string | null): StoredProfile | null {
  if (!text) return null;
  try {
    const value = JSON.parse(text) as StoredProfile;
    return typeof value.fetchedAt === "number" ? value : null;
  } catch {
    return null;
  }
}

function fromStore(stored: StoredProfile | null): ProfileResult | undefined {
  if (!stored) return undefined;
  return stored.profile
    ? { profile: stored.profile, status: "cached" }
    : { profile: null, status: "unavailable" };
}
