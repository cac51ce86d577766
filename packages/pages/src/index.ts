import { type Bus, publishJson } from "@switchboard/bus";
import type { PageLifecycleEvent, PageStatus, Platform } from "@switchboard/contracts";
import type { TokenBinding, TokenCipher } from "@switchboard/crypto";
import type { Db, PageConnection } from "@switchboard/db";

/**
 * The lifecycle of a PageConnection: connect, disconnect, status changes and token reads, in one place
 * for the CLI, the console and the services. Every change is announced on the bus (without the token)
 * so caches and subscriptions follow at once.
 */
export interface PageDeps {
  db: Db;
  bus: Bus;
}

export class PageNotFoundError extends Error {
  constructor(readonly pageId: string) {
    super(`page ${pageId} is not connected`);
    this.name = "PageNotFoundError";
  }
}

/** Connecting a page another company already owns; names the page, never the owner or its token. */
export class PageOwnedByAnotherCompanyError extends Error {
  constructor(readonly pageId: string) {
    super(`page ${pageId} belongs to another company`);
    this.name = "PageOwnedByAnotherCompanyError";
  }
}

/** Reconnecting an id as the other platform: a Page id is never an Instagram account's id. */
export class PagePlatformMismatchError extends Error {
  constructor(
    readonly pageId: string,
    readonly platform: Platform,
  ) {
    super(
      `${pageId} is connected as a ${platform} ${platform === "instagram" ? "account" : "page"}; disconnect is not enough, it cannot change platform`,
    );
    this.name = "PagePlatformMismatchError";
  }
}

/** A page token is bound to its page, so a ciphertext copied into another page's row does not decrypt. */
function pageTokenBinding(pageId: string): TokenBinding {
  return { context: `page:${pageId}` };
}

export function encryptPageToken(cipher: TokenCipher, pageId: string, token: string): string {
  return cipher.encrypt(token, pageTokenBinding(pageId));
}

export function decryptPageToken(cipher: TokenCipher, pageId: string, pageAccessTokenEnc: string): string {
  return cipher.decrypt(pageAccessTokenEnc, pageTokenBinding(pageId));
}

export async function publishPageEvent(
  bus: Bus,
  event: Omit<PageLifecycleEvent, "occurredAt">,
  at = new Date(),
  /** What makes two publishes the same event (JetStream drops the second); by default its time. */
  msgId = `${event.type}:${event.pageId}:${at.getTime()}`,
) {
  const full: PageLifecycleEvent = { ...event, occurredAt: at.getTime() };
  await publishJson(bus.js, bus.topology.subjects.pageLifecycle(event.type, event.pageId), full, {
    msgId,
  });
  return full;
}

export interface ConnectPageInput {
  pageId: string;
  name: string;
  companyId: string;
  token: string;
  /** Default `messenger`. For `instagram`, `pageId` is the account's id (its webhooks' `entry.id`). */
  platform?: Platform;
  /** When the token expires, if the operator knows (Instagram tokens: 60 days after issue or refresh). */
  tokenExpiresAt?: Date;
}

/**
 * Encrypts the token and upserts the page; `page.connected` for a new or re-enabled page, else
 * `page.token_updated`. A page owned by another company is refused with PageOwnedByAnotherCompanyError.
 */
export async function connectPage(
  { db, bus, cipher }: PageDeps & { cipher: TokenCipher },
  input: ConnectPageInput,
): Promise<{ page: PageConnection; event: PageLifecycleEvent["type"] }> {
  if (!/^\d+$/.test(input.pageId)) throw new Error(`page id must be digits, got "${input.pageId}"`);
  if (!input.token.trim()) throw new Error("the page token is empty");
  const pageAccessTokenEnc = encryptPageToken(cipher, input.pageId, input.token.trim());
  // One statement, so two companies connecting the same page at once cannot both pass an ownership
  // check: the update only applies to the owner's row, and no row back means someone else owns it.
  // `previous` reads the statement's snapshot; a row inserted concurrently by the same company shows
  // as absent, which only turns that `page.token_updated` into a (harmless) second `page.connected`.
  const platform = input.platform ?? "messenger";
  const tokenExpiresAt = input.tokenExpiresAt ?? null;
  const [row] = await db.$queryRaw<Array<PageConnection & { previousStatus: PageStatus | null }>>`
    WITH previous AS (SELECT status FROM page_connections WHERE page_id = ${input.pageId})
    INSERT INTO page_connections (id, company_id, page_id, name, page_access_token_enc, platform,
                                  token_obtained_at, token_expires_at, updated_at)
    VALUES (gen_random_uuid(), ${input.companyId}, ${input.pageId}, ${input.name}, ${pageAccessTokenEnc},
            ${platform}::platform, now(), ${tokenExpiresAt}::timestamptz, now())
    ON CONFLICT (page_id) DO UPDATE
      SET name = EXCLUDED.name,
          page_access_token_enc = EXCLUDED.page_access_token_enc,
          -- A new token does not lift Meta's block: only Meta's unblock does.
          status = CASE WHEN page_connections.status = 'blocked' THEN 'blocked'::page_status ELSE 'active'::page_status END,
          status_reason = CASE WHEN page_connections.status = 'blocked' THEN page_connections.status_reason END,
          token_obtained_at = EXCLUDED.token_obtained_at,
          token_expires_at = EXCLUDED.token_expires_at,
          token_refreshed_at = NULL,
          updated_at = now()
      WHERE page_connections.company_id = EXCLUDED.company_id
        AND page_connections.platform = EXCLUDED.platform
    RETURNING id, company_id AS "companyId", page_id AS "pageId", name,
      page_access_token_enc AS "pageAccessTokenEnc", status::text AS status,
      status_reason AS "statusReason", platform::text AS platform,
      token_obtained_at AS "tokenObtainedAt", token_expires_at AS "tokenExpiresAt",
      token_refreshed_at AS "tokenRefreshedAt", created_at AS "createdAt", updated_at AS "updatedAt",
      (SELECT status::text FROM previous) AS "previousStatus"`;
  if (!row) {
    const existing = await db.pageConnection.findUnique({
      where: { pageId: input.pageId },
      select: { companyId: true, platform: true },
    });
    if (existing && existing.companyId === input.companyId && existing.platform !== platform) {
      throw new PagePlatformMismatchError(input.pageId, existing.platform);
    }
    throw new PageOwnedByAnotherCompanyError(input.pageId);
  }
  const { previousStatus, ...page } = row;
  const type =
    previousStatus === "active" || previousStatus === "blocked" ? "page.token_updated" : "page.connected";
  await publishPageEvent(bus, {
    type,
    pageId: page.pageId,
    companyId: page.companyId,
    platform: page.platform,
    status: page.status,
    reason: null,
  });
  return { page, event: type };
}

export async function disconnectPage({ db, bus }: PageDeps, pageId: string): Promise<PageConnection> {
  const page = await db.pageConnection.findUnique({ where: { pageId } });
  if (!page) throw new PageNotFoundError(pageId);
  const updated = await db.pageConnection.update({
    where: { pageId },
    data: { status: "disabled", statusReason: "disconnected by an operator" },
  });
  await publishPageEvent(bus, {
    type: "page.disconnected",
    pageId,
    companyId: page.companyId,
    platform: page.platform,
    status: "disabled",
    reason: updated.statusReason,
  });
  return updated;
}

/** Moves a page to `status` (e.g. `reauthorization_required` after Graph error 190); announces only real changes. */
export async function setPageStatus(
  { db, bus }: PageDeps,
  pageId: string,
  status: PageStatus,
  reason: string | null,
): Promise<boolean> {
  const changed = await db.pageConnection.updateMany({
    where: { pageId, NOT: { status } },
    data: { status, statusReason: reason },
  });
  if (changed.count === 0) return false;
  const page = await db.pageConnection.findUniqueOrThrow({ where: { pageId } });
  await publishPageEvent(bus, {
    type: "page.status_changed",
    pageId,
    companyId: page.companyId,
    platform: page.platform,
    status,
    reason,
  });
  return true;
}

/** The decrypted token of a page, for the process that calls Meta with it. */
export async function readPageToken(db: Db, cipher: TokenCipher, pageId: string): Promise<string> {
  const page = await db.pageConnection.findUnique({
    where: { pageId },
    select: { pageAccessTokenEnc: true },
  });
  if (!page) throw new PageNotFoundError(pageId);
  return decryptPageToken(cipher, pageId, page.pageAccessTokenEnc);
}

/**
 * Re-encrypts every page token still on an older key, or not yet bound to its page (v1), with the
 * current (first) key of TOKEN_ENCRYPTION_KEYS, so an old key can then be removed. Tokens never leave
 * this process.
 */
export async function rotatePageTokens(
  db: Db,
  cipher: TokenCipher,
): Promise<{ rotated: number; current: number }> {
  const pages = await db.pageConnection.findMany({ select: { pageId: true, pageAccessTokenEnc: true } });
  let rotated = 0;
  for (const page of pages) {
    if (cipher.isCurrent(page.pageAccessTokenEnc)) continue;
    const token = decryptPageToken(cipher, page.pageId, page.pageAccessTokenEnc);
    const pageAccessTokenEnc = encryptPageToken(cipher, page.pageId, token);
    // Only if nobody reconnected the page meanwhile.
    const updated = await db.pageConnection.updateMany({
      where: { pageId: page.pageId, pageAccessTokenEnc: page.pageAccessTokenEnc },
      data: { pageAccessTokenEnc },
    });
    rotated += updated.count;
  }
  return { rotated, current: pages.length - rotated };
}

/**
 * Stores a token Switchboard obtained itself (an Instagram refresh) in place of `previousTokenEnc`; false
 * when the row no longer holds that ciphertext (an operator reconnected meanwhile: theirs wins).
 */
export async function replaceRefreshedToken(
  { db, bus, cipher }: PageDeps & { cipher: TokenCipher },
  input: { pageId: string; previousTokenEnc: string; token: string; expiresAt: Date | null },
): Promise<boolean> {
  const pageAccessTokenEnc = encryptPageToken(cipher, input.pageId, input.token);
  const updated = await db.pageConnection.updateMany({
    where: { pageId: input.pageId, pageAccessTokenEnc: input.previousTokenEnc },
    data: { pageAccessTokenEnc, tokenExpiresAt: input.expiresAt, tokenRefreshedAt: new Date() },
  });
  if (updated.count === 0) return false;
  const page = await db.pageConnection.findUniqueOrThrow({ where: { pageId: input.pageId } });
  // Caches holding the old ciphertext (the page-router's directory) drop it.
  await publishPageEvent(bus, {
    type: "page.token_updated",
    pageId: page.pageId,
    companyId: page.companyId,
    platform: page.platform,
    status: page.status,
    reason: "token refreshed",
  });
  return true;
}

export interface PageOverview {
  pageId: string;
  name: string;
  companyId: string;
  platform: Platform;
  tokenExpiresAt: Date | null;
  status: PageStatus;
  statusReason: string | null;
  subscriptionStatus: string | null;
  subscribedFields: string[];
  tokenKeyId: string | null;
  updatedAt: Date;
}

export async function listPages(db: Db, cipher?: TokenCipher): Promise<PageOverview[]> {
  const [pages, subscriptions] = await Promise.all([
    db.pageConnection.findMany({ orderBy: [{ companyId: "asc" }, { name: "asc" }] }),
    db.pageSubscription.findMany(),
  ]);
  const byPage = new Map(subscriptions.map((s) => [s.pageId, s]));
  return pages.map((p) => ({
    pageId: p.pageId,
    name: p.name,
    companyId: p.companyId,
    platform: p.platform,
    tokenExpiresAt: p.tokenExpiresAt,
    status: p.status,
    statusReason: p.statusReason,
    subscriptionStatus: byPage.get(p.pageId)?.status ?? null,
    subscribedFields: byPage.get(p.pageId)?.subscribedFields ?? [],
    tokenKeyId: cipher ? safeKeyId(cipher, p.pageAccessTokenEnc) : null,
    updatedAt: p.updatedAt,
  }));
}

function safeKeyId(cipher: TokenCipher, ciphertext: string): string | null {
  try {
    return cipher.keyIdOf(ciphertext);
  } catch {
    return null;
  }
}
