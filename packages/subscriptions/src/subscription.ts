import type { Bus } from "@switchboard/bus";
import type { Platform } from "@switchboard/contracts";
import { type TokenCipher, TokenDecryptionError } from "@switchboard/crypto";
import type { Db, SubscriptionStatus } from "@switchboard/db";
import {
  type GraphClient,
  type GraphErrorKind,
  graphFailurePolicy,
  RateLimitError,
} from "@switchboard/graph-api";
import { decryptPageToken, PageNotFoundError, publishPageEvent, setPageStatus } from "@switchboard/pages";
import type { Logger } from "pino";
import { missingFields } from "./fields";

/**
 * The page's stored token cannot be decrypted (its key left TOKEN_ENCRYPTION_KEYS, or the row is damaged):
 * only an operator can fix it, so it is recorded on the page, never retried. Any other error on the way
 * (the database, the network) is not this: it propagates, and the caller tries again.
 */
export class UnreadableTokenError extends Error {
  constructor(pageId: string) {
    // A decryption failure names no secret, but keep only our own words.
    super(`the stored token of page ${pageId} could not be decrypted`);
    this.name = "UnreadableTokenError";
  }
}

/** How one platform's connections are subscribed: its host, its app, its fields. */
export interface PlatformSubscription {
  graph: GraphClient;
  /** How this app is recognised in `subscribed_apps` (FB_APP_ID; INSTAGRAM_APP_ID for Instagram). */
  appId: string;
  desiredFields: readonly string[];
}

/** What reconciling a page's subscription needs; the service, the console and the CLI build the same thing. */
export interface SubscriptionContext extends PlatformSubscription {
  db: Db;
  cipher: TokenCipher;
  /**
   * Instagram accounts, on the Instagram API (`{INSTAGRAM_API_BASE_URL}/{v}/{account-id}/subscribed_apps`);
   * the top-level graph, appId and desiredFields are for Facebook Pages.
   */
  instagram?: PlatformSubscription;
  /** Announces `reauthorization_required` on the page; a read-only check runs without it. */
  bus?: Bus;
  log: Logger;
  /** Retryable failures in a row before the page's subscription status becomes `error`. Default 3. */
  failureThreshold?: number;
}

export type FailureKind = GraphErrorKind | "token_unreadable";

export interface SubscriptionFailure {
  kind: FailureKind;
  retryable: boolean;
  /** Meta's own estimate of when the page may call again (rate limits only). */
  retryAfterMs?: number;
  message: string;
}

/** What Meta says about this app on one page. */
export interface SubscriptionView {
  appSubscribed: boolean;
  subscribedFields: string[];
  missingFields: string[];
  /** True when the app is there with at least every desired field. */
  complete: boolean;
}

/**
 * `reconcile`: check, and subscribe only when something is missing (the periodic loop).
 * `subscribe`: subscribe, then verify (a page was connected or got a new token).
 * `resubscribe`: read what is there, subscribe anyway, verify (an operator's repair).
 */
export type ReconcileMode = "reconcile" | "subscribe" | "resubscribe";

export type ReconcileAction = "verified" | "repaired" | "subscribed" | "unsubscribed" | "failed";

export interface ReconcileResult {
  pageId: string;
  action: ReconcileAction;
  status: SubscriptionStatus;
  /** Fields before any change (null when not read, as on `subscribe`, or when the read failed). */
  before: string[] | null;
  /** Fields Meta lists after the change (null when a call failed and Meta's answer is unknown). */
  after: string[] | null;
  missingFields: string[];
  problem: string | null;
  failure?: SubscriptionFailure;
  consecutiveFailures: number;
}

export function viewOf(
  apps: Array<{ id: string; subscribed_fields: string[] }>,
  appId: string,
  desired: readonly string[],
): SubscriptionView {
  const ours = apps.find((app) => app.id === appId);
  const subscribedFields = ours ? [...ours.subscribed_fields].sort() : [];
  const missing = missingFields(desired, subscribedFields);
  return {
    appSubscribed: ours !== undefined,
    subscribedFields,
    missingFields: missing,
    complete: ours !== undefined && missing.length === 0,
  };
}

function describeView(view: SubscriptionView): string | null {
  if (!view.appSubscribed) return "app not subscribed";
  if (view.missingFields.length > 0) return `missing fields: ${view.missingFields.join(", ")}`;
  return null;
}

/**
 * The failures a page's subscription records: Graph's answers and an unreadable token. Anything else (the
 * database is down, a bug) says nothing about the page and is rethrown, so the event or job is retried.
 */
function failureOf(error: unknown): SubscriptionFailure {
  // The one Graph-failure policy: a dead token is re-authorisation (recorded below), a throttle waits,
  // a passing failure counts towards `error` only when it repeats, the rest is `error` at once.
  const policy = graphFailurePolicy(error);
  if (policy) {
    return {
      kind: policy.error.kind,
      retryable: policy.action === "retry" || policy.action === "back_off",
      ...(policy.action === "back_off" &&
      policy.error instanceof RateLimitError &&
      policy.error.retryAfterMs !== undefined
        ? { retryAfterMs: policy.retryAfterMs }
        : {}),
      message: policy.error.message,
    };
  }
  if (error instanceof UnreadableTokenError) {
    return { kind: "token_unreadable", retryable: false, message: error.message };
  }
  throw error;
}

/** The operator-facing problem for a failure: what happened and what to do. */
export function describeFailure(failure: SubscriptionFailure): string {
  switch (failure.kind) {
    case "invalid_token":
      return `token invalid (reconnect the page with \`pnpm sb pages connect\`): ${failure.message}`;
    case "permission":
      return `permission missing (a Page token needs pages_messaging and pages_manage_metadata, an Instagram token instagram_business_basic and instagram_business_manage_messages): ${failure.message}`;
    case "rate_limit":
      return `rate limited by Meta: ${failure.message}`;
    case "token_unreadable":
      return `token cannot be decrypted (is its key still in TOKEN_ENCRYPTION_KEYS?): ${failure.message}`;
    default:
      return failure.message;
  }
}

/** The platform's settings; an Instagram account without them is a configuration error, never a Page call. */
export function platformSubscriptionOf(
  ctx: Pick<SubscriptionContext, "graph" | "appId" | "desiredFields" | "instagram">,
  platform: Platform,
): PlatformSubscription {
  if (platform === "messenger") return ctx;
  if (!ctx.instagram)
    throw new Error("Instagram accounts need the Instagram API settings (INSTAGRAM_APP_ID)");
  return ctx.instagram;
}

/** The page's token and where to use it: its platform decides the host, the app and the fields. */
async function credentialsOf(
  ctx: Pick<SubscriptionContext, "db" | "cipher" | "graph" | "appId" | "desiredFields" | "instagram">,
  pageId: string,
): Promise<{ token: string; platform: PlatformSubscription }> {
  const page = await ctx.db.pageConnection.findUnique({
    where: { pageId },
    select: { pageAccessTokenEnc: true, platform: true },
  });
  if (!page) throw new PageNotFoundError(pageId);
  const platform = platformSubscriptionOf(ctx, page.platform);
  try {
    return { token: decryptPageToken(ctx.cipher, pageId, page.pageAccessTokenEnc), platform };
  } catch (error) {
    if (error instanceof TokenDecryptionError) throw new UnreadableTokenError(pageId);
    throw error;
  }
}

/** The fields a page should have, for records written before its credentials are read (or when they cannot be). */
async function desiredFieldsOf(ctx: SubscriptionContext, pageId: string): Promise<readonly string[]> {
  const page = await ctx.db.pageConnection.findUnique({ where: { pageId }, select: { platform: true } });
  return page?.platform === "instagram" && ctx.instagram ? ctx.instagram.desiredFields : ctx.desiredFields;
}

/** Asks Meta what this app's subscription on the page is, changing nothing (`pnpm sb subscriptions check`). */
export async function inspectSubscription(
  ctx: Pick<SubscriptionContext, "db" | "cipher" | "graph" | "appId" | "desiredFields" | "instagram">,
  pageId: string,
): Promise<{ view?: SubscriptionView; problem: string | null; failure?: SubscriptionFailure }> {
  try {
    const { token, platform } = await credentialsOf(ctx, pageId);
    const view = viewOf(
      await platform.graph.getSubscribedApps(pageId, token),
      platform.appId,
      platform.desiredFields,
    );
    return { view, problem: describeView(view) };
  } catch (error) {
    const failure = failureOf(error);
    return { problem: describeFailure(failure), failure };
  }
}

/**
 * Brings one page's subscription to the desired state on its own `/{page-id}/subscribed_apps` with its own
 * token, and records the outcome in `page_subscriptions`. Graph failures and an unreadable token are
 * recorded and returned, not thrown: the caller decides whether to retry. Anything else (the database,
 * a missing page) is thrown, recording nothing: the caller retries it. An invalid token (190) moves the page to
 * `reauthorization_required`, which stops the periodic checks until the token is replaced.
 */
export async function reconcileSubscription(
  ctx: SubscriptionContext,
  pageId: string,
  mode: ReconcileMode,
): Promise<ReconcileResult> {
  return announcingChange(ctx, pageId, () => reconcileOnce(ctx, pageId, mode));
}

async function reconcileOnce(
  ctx: SubscriptionContext,
  pageId: string,
  mode: ReconcileMode,
): Promise<ReconcileResult> {
  let before: string[] | null = null;
  try {
    const { token, platform } = await credentialsOf(ctx, pageId);
    const { graph, appId, desiredFields } = platform;
    if (mode !== "subscribe") {
      const current = viewOf(await graph.getSubscribedApps(pageId, token), appId, desiredFields);
      before = current.appSubscribed ? current.subscribedFields : [];
      if (mode === "reconcile" && current.complete) {
        return await recordView(ctx, pageId, current, desiredFields, {
          action: "verified",
          before,
          subscribed: false,
        });
      }
    }
    // Keep fields someone else added to this app (the union), so a repair never narrows a subscription.
    const fields = [...new Set([...desiredFields, ...(before ?? [])])];
    await graph.subscribeApp(pageId, token, fields);
    const after = viewOf(await graph.getSubscribedApps(pageId, token), appId, desiredFields);
    const action = mode === "reconcile" ? "repaired" : "subscribed";
    if (mode === "reconcile") {
      ctx.log.warn({ pageId, before, after: after.subscribedFields }, "subscription drifted, re-subscribed");
    }
    return await recordView(ctx, pageId, after, desiredFields, { action, before, subscribed: true });
  } catch (error) {
    return await recordFailure(ctx, pageId, failureOf(error), before);
  }
}

/** `DELETE /{page-id}/subscribed_apps` for a disconnected page, recorded as `unsubscribed`. */
export async function unsubscribePage(ctx: SubscriptionContext, pageId: string): Promise<ReconcileResult> {
  return announcingChange(ctx, pageId, () => unsubscribeOnce(ctx, pageId));
}

/**
 * Runs a check or change and, when the page's subscription status moved (subscribed → error, missing →
 * subscribed…), announces `page.subscription_changed` so the product hears about its health. The status
 * itself is in `page_subscriptions` whatever happens to the announcement.
 */
async function announcingChange(
  ctx: SubscriptionContext,
  pageId: string,
  run: () => Promise<ReconcileResult>,
): Promise<ReconcileResult> {
  const previous = await ctx.db.pageSubscription.findUnique({
    where: { pageId },
    select: { status: true, updatedAt: true },
  });
  const result = await run();
  if (!ctx.bus || result.status === previous?.status) return result;
  const page = await ctx.db.pageConnection.findUnique({
    where: { pageId },
    select: { companyId: true, status: true, platform: true },
  });
  if (!page) return result;
  try {
    await publishPageEvent(
      ctx.bus,
      {
        type: "page.subscription_changed",
        pageId,
        companyId: page.companyId,
        platform: page.platform,
        status: page.status,
        reason: result.problem,
        subscriptionStatus: result.status,
        previousSubscriptionStatus: previous?.status ?? null,
      },
      new Date(),
      // Two replicas that saw the same row move it the same way (a page.connected and a scheduled check at
      // once): one event, not two.
      `page.subscription_changed:${pageId}:${previous?.status ?? "none"}@${previous?.updatedAt.getTime() ?? 0}:${result.status}`,
    );
  } catch (error) {
    ctx.log.warn({ pageId, err: error }, "could not announce the subscription's new status");
  }
  return result;
}

async function unsubscribeOnce(ctx: SubscriptionContext, pageId: string): Promise<ReconcileResult> {
  try {
    const { token, platform } = await credentialsOf(ctx, pageId);
    await platform.graph.unsubscribeApp(pageId, token);
    const row = await ctx.db.pageSubscription.upsert({
      where: { pageId },
      create: {
        pageId,
        desiredFields: [...platform.desiredFields],
        subscribedFields: [],
        status: "unsubscribed",
        lastCheckedAt: new Date(),
      },
      update: {
        subscribedFields: [],
        status: "unsubscribed",
        lastCheckedAt: new Date(),
        lastError: null,
        consecutiveFailures: 0,
      },
    });
    return {
      pageId,
      action: "unsubscribed",
      status: row.status,
      before: null,
      after: [],
      missingFields: [],
      problem: null,
      consecutiveFailures: 0,
    };
  } catch (error) {
    const failure = failureOf(error);
    // A dead token cannot unsubscribe, and Meta drops the app with the token's grant anyway: nothing to retry.
    const status = failure.kind === "invalid_token" ? "unsubscribed" : undefined;
    return await recordFailure(ctx, pageId, failure, null, status);
  }
}

async function recordView(
  ctx: SubscriptionContext,
  pageId: string,
  view: SubscriptionView,
  desiredFields: readonly string[],
  { action, before, subscribed }: { action: ReconcileAction; before: string[] | null; subscribed: boolean },
): Promise<ReconcileResult> {
  const now = new Date();
  const problem = describeView(view);
  const status: SubscriptionStatus = view.complete ? "subscribed" : "missing";
  const data = {
    desiredFields: [...desiredFields],
    subscribedFields: view.subscribedFields,
    status,
    lastCheckedAt: now,
    ...(subscribed ? { lastSubscribedAt: now } : {}),
    lastError: view.complete ? null : `Meta lists ${problem} after subscribing`,
  };
  const row = await ctx.db.pageSubscription.upsert({
    where: { pageId },
    create: { pageId, ...data, consecutiveFailures: view.complete ? 0 : 1 },
    update: { ...data, consecutiveFailures: view.complete ? 0 : { increment: 1 } },
  });
  return {
    pageId,
    action: view.complete ? action : "failed",
    status,
    before,
    after: view.subscribedFields,
    missingFields: view.missingFields,
    problem,
    consecutiveFailures: row.consecutiveFailures,
  };
}

async function recordFailure(
  ctx: SubscriptionContext,
  pageId: string,
  failure: SubscriptionFailure,
  before: string[] | null,
  forcedStatus?: SubscriptionStatus,
): Promise<ReconcileResult> {
  const threshold = ctx.failureThreshold ?? 3;
  const problem = describeFailure(failure);
  const lastError = problem.slice(0, 1000);
  const desiredFields = await desiredFieldsOf(ctx, pageId);
  const row = await ctx.db.pageSubscription.upsert({
    where: { pageId },
    create: {
      pageId,
      desiredFields: [...desiredFields],
      subscribedFields: [],
      status: "pending",
      lastCheckedAt: new Date(),
      lastError,
      consecutiveFailures: 1,
    },
    update: { lastCheckedAt: new Date(), lastError, consecutiveFailures: { increment: 1 } },
  });
  // Retryable failures (rate limit, Meta unavailable) become `error` only when they repeat; a failure
  // only an operator can fix is `error` at once.
  const status: SubscriptionStatus =
    forcedStatus ??
    (failure.kind === "invalid_token"
      ? "reauthorization_required"
      : !failure.retryable || row.consecutiveFailures >= threshold
        ? "error"
        : row.status);
  if (status !== row.status) await ctx.db.pageSubscription.update({ where: { pageId }, data: { status } });
  if (failure.kind === "invalid_token" && forcedStatus === undefined && ctx.bus) {
    await setPageStatus(
      { db: ctx.db, bus: ctx.bus },
      pageId,
      "reauthorization_required",
      problem.slice(0, 500),
    );
  }
  ctx.log.warn(
    {
      pageId,
      kind: failure.kind,
      status,
      consecutiveFailures: row.consecutiveFailures,
      err: failure.message,
    },
    "subscription call failed",
  );
  return {
    pageId,
    action: "failed",
    status,
    before,
    after: null,
    missingFields: missingFields(desiredFields, row.subscribedFields),
    problem,
    failure,
    consecutiveFailures: row.consecutiveFailures,
  };
}
