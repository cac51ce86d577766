import type { Bus } from "@switchboard/bus";
import type { TokenCipher } from "@switchboard/crypto";
import type { Db } from "@switchboard/db";
import { listPages } from "@switchboard/pages";
import { missingFields } from "@switchboard/subscriptions";
import pLimit from "p-limit";
import { deadLettersByPage, lastWebhookAt, readJetStreamState } from "./jetstream";

export type TokenStatus = "ok" | "unreadable" | "reauthorization_required" | "none";

/** One line of the console: a page connection (or a page we only have unrouted entries for). */
export interface PageRow {
  pageId: string;
  name: string | null;
  companyId: string | null;
  /** `messenger` (a Facebook Page) or `instagram` (an Instagram account); null for an id nobody connected. */
  platform: "messenger" | "instagram" | null;
  /** When the token expires, when known (Instagram tokens last 60 days and are refreshed before). */
  tokenExpiresAt: Date | null;
  pageStatus: string | null;
  statusReason: string | null;
  subscriptionStatus: string | null;
  subscribedFields: string[];
  missingFields: string[];
  subscriptionError: string | null;
  lastCheckedAt: Date | null;
  tokenStatus: TokenStatus;
  tokenKeyId: string | null;
  lastWebhookAt: Date | null;
  messagesLastHour: number;
  unrouted: number;
  /** Entries waiting in the page's overflow: over its fair share while other pages wait. */
  waitingForShare: number;
  deadLettered: number;
  /** What an operator should look at, most serious first; empty when the page is healthy. */
  problems: string[];
  /** Sum of the problems' weights: a page that receives nothing outranks one with entries waiting. */
  severity: number;
}

export interface OverviewDeps {
  db: Db;
  bus: Bus;
  cipher: TokenCipher;
  /** SUBSCRIBED_FIELDS (Pages), and INSTAGRAM_SUBSCRIBED_FIELDS for Instagram accounts. */
  desiredFields: readonly string[];
  instagramDesiredFields?: readonly string[];
  now?: () => Date;
}

/** Problems first (most serious on top), then by company and name. */
export function byProblemsFirst(a: PageRow, b: PageRow): number {
  return (
    b.severity - a.severity ||
    Number(a.companyId === null) - Number(b.companyId === null) ||
    (a.companyId ?? "").localeCompare(b.companyId ?? "") ||
    (a.name ?? "").localeCompare(b.name ?? "") ||
    a.pageId.localeCompare(b.pageId)
  );
}

// Weights: without a subscription or a token the page receives nothing; dead letters are lost work until
// replayed; unrouted entries wait safely.
function problemsOf(row: Omit<PageRow, "problems" | "severity">): Pick<PageRow, "problems" | "severity"> {
  const found: Array<[string, number]> = [];
  if (row.pageStatus === null) found.push(["not connected", 1]);
  if (row.tokenStatus === "reauthorization_required") found.push(["needs a new token", 4]);
  if (row.tokenStatus === "unreadable") found.push(["token cannot be decrypted", 4]);
  // Meta blocked the page from messaging: it still receives, but nothing it queues goes out.
  if (row.pageStatus === "blocked") found.push([row.statusReason ?? "blocked by Meta", 4]);
  if (row.tokenExpiresAt && row.tokenExpiresAt.getTime() - Date.now() < 7 * 86_400_000) {
    found.push([`token expires ${row.tokenExpiresAt.toISOString().slice(0, 10)}`, 3]);
  }
  if (row.pageStatus === "active" || row.pageStatus === "blocked") {
    if (row.subscriptionStatus !== "subscribed") {
      found.push([`subscription ${row.subscriptionStatus ?? "never checked"}`, 4]);
    } else if (row.missingFields.length > 0) {
      found.push([`fields missing: ${row.missingFields.join(", ")}`, 3]);
    }
  }
  if (row.deadLettered > 0) found.push([`${row.deadLettered} dead-lettered`, 2]);
  if (row.unrouted > 0) found.push([`${row.unrouted} unrouted`, 1]);
  if (row.waitingForShare > 0) found.push([`${row.waitingForShare} waiting for its fair share`, 1]);
  return {
    problems: found.map(([text]) => text),
    severity: found.reduce((sum, [, weight]) => sum + weight, 0),
  };
}

/** One page of the overview: its rows, and what the whole list holds. */
export interface Overview {
  rows: PageRow[];
  /** Pages in the whole list, and how many of them have problems. */
  total: number;
  withProblems: number;
  offset: number;
  limit: number;
}

/**
 * The overview, problems first, `limit` rows from `offset`. What ranks the pages comes from the database
 * and a fixed number of JetStream requests whatever the number of pages (stream infos with per-subject
 * counts, the dead letters); only the shown rows cost a request each (their last webhook).
 */
export async function loadOverview(
  deps: OverviewDeps,
  window: { offset?: number; limit?: number } = {},
): Promise<Overview> {
  const offset = Math.max(0, window.offset ?? 0);
  const limit = Math.max(1, window.limit ?? 50);
  const ranked = (await rankPages(deps)).sort(byProblemsFirst);
  const rows = ranked.slice(offset, offset + limit);
  const limitRequests = pLimit(16);
  await Promise.all(
    rows.map((row) =>
      limitRequests(async () => {
        row.lastWebhookAt = await lastWebhookAt(deps.bus, row.pageId);
      }),
    ),
  );
  return {
    rows,
    total: ranked.length,
    withProblems: ranked.filter((r) => r.problems.length > 0).length,
    offset,
    limit,
  };
}

async function rankPages(deps: OverviewDeps): Promise<PageRow[]> {
  const { db, bus, cipher } = deps;
  const now = deps.now?.() ?? new Date();
  const hourAgo = new Date(now.getTime() - 3_600_000);
  const [pages, subscriptions, recent, jetstream, deadLetters] = await Promise.all([
    listPages(db, cipher),
    db.pageSubscription.findMany({ select: { pageId: true, lastError: true, lastCheckedAt: true } }),
    db.message.groupBy({ by: ["pageId"], where: { createdAt: { gte: hourAgo } }, _count: { _all: true } }),
    readJetStreamState(bus),
    deadLettersByPage(bus),
  ]);
  const subscriptionOf = new Map(subscriptions.map((s) => [s.pageId, s]));
  const messagesOf = new Map(recent.map((r) => [r.pageId, r._count._all]));
  const known = new Set(pages.map((p) => p.pageId));
  // Pages Meta sends for that are not connected show up through their unrouted entries.
  const strangers = [...jetstream.unroutedByPage.keys()].filter(
    (id) => !known.has(id) && !id.startsWith("_"),
  );

  const rows = pages.map((page) => {
    const subscription = subscriptionOf.get(page.pageId);
    const tokenStatus: TokenStatus =
      page.status === "reauthorization_required"
        ? "reauthorization_required"
        : page.tokenKeyId === null
          ? "unreadable"
          : "ok";
    const row = {
      pageId: page.pageId,
      name: page.name,
      companyId: page.companyId,
      platform: page.platform,
      tokenExpiresAt: page.tokenExpiresAt,
      pageStatus: page.status,
      statusReason: page.statusReason,
      subscriptionStatus: page.subscriptionStatus,
      subscribedFields: page.subscribedFields,
      missingFields:
        page.subscriptionStatus === null
          ? []
          : missingFields(
              page.platform === "instagram"
                ? (deps.instagramDesiredFields ?? deps.desiredFields)
                : deps.desiredFields,
              page.subscribedFields,
            ),
      subscriptionError: subscription?.lastError ?? null,
      lastCheckedAt: subscription?.lastCheckedAt ?? null,
      tokenStatus,
      tokenKeyId: page.tokenKeyId,
      lastWebhookAt: null as Date | null,
      messagesLastHour: messagesOf.get(page.pageId) ?? 0,
      unrouted: jetstream.unroutedByPage.get(page.pageId) ?? 0,
      waitingForShare: jetstream.overflowByPage.get(page.pageId) ?? 0,
      deadLettered: deadLetters.get(page.pageId) ?? 0,
    };
    return { ...row, ...problemsOf(row) };
  });
  const strangerRows = strangers.map((pageId) => {
    const row = {
      pageId,
      name: null,
      companyId: null,
      platform: null,
      tokenExpiresAt: null,
      pageStatus: null,
      statusReason: null,
      subscriptionStatus: null,
      subscribedFields: [],
      missingFields: [],
      subscriptionError: null,
      lastCheckedAt: null,
      tokenStatus: "none" as const,
      tokenKeyId: null,
      lastWebhookAt: null as Date | null,
      messagesLastHour: 0,
      unrouted: jetstream.unroutedByPage.get(pageId) ?? 0,
      waitingForShare: 0,
      deadLettered: deadLetters.get(pageId) ?? 0,
    };
    return { ...row, ...problemsOf(row) };
  });
  return [...rows, ...strangerRows];
}
