import type {
  CreateWebhookEndpointRequest,
  UpdateWebhookEndpointRequest,
  WebhookDeliveryView,
  WebhookEndpointView,
} from "@switchboard/contracts";
import type { TokenCipher } from "@switchboard/crypto";
import type { Db, WebhookAttempt, WebhookDelivery, WebhookEndpoint } from "@switchboard/db";
import { generateEndpointSecret } from "./signature";
import { checkTargetUrl, type TargetPolicy } from "./target-policy";

/**
 * Outbound webhook endpoints and their delivery log, for the Conversations API, the CLI, the console and
 * the dispatcher: one place that reads and writes them. Every call is scoped to a company, so an
 * endpoint of another company is answered exactly like one that does not exist.
 */
export interface EndpointStoreDeps {
  db: Db;
  cipher: TokenCipher;
  policy: TargetPolicy;
}

/** How long the previous secret keeps signing after a rotation. */
export const SECRET_OVERLAP_MS = 24 * 3_600_000;

/** A URL refused by the target policy (API: 400 with the reason). */
export { TargetRefusedError } from "./target-policy";

/** The secret is bound to its endpoint: a ciphertext copied into another row does not decrypt. */
const secretBinding = (endpointId: string) => ({ context: `webhook-endpoint:${endpointId}` });

export function encryptEndpointSecret(cipher: TokenCipher, endpointId: string, secret: string): string {
  return cipher.encrypt(secret, secretBinding(endpointId));
}

/** The secrets a delivery is signed with now: the current one, and the previous one during its overlap. */
export function signingSecrets(
  cipher: TokenCipher,
  endpoint: Pick<WebhookEndpoint, "id" | "secretEnc" | "previousSecretEnc" | "previousSecretExpiresAt">,
  now = new Date(),
): string[] {
  const secrets = [cipher.decrypt(endpoint.secretEnc, secretBinding(endpoint.id))];
  if (
    endpoint.previousSecretEnc &&
    endpoint.previousSecretExpiresAt &&
    endpoint.previousSecretExpiresAt > now
  ) {
    secrets.push(cipher.decrypt(endpoint.previousSecretEnc, secretBinding(endpoint.id)));
  }
  return secrets;
}

interface EndpointHealthRow {
  endpoint_id: string;
  pending: bigint;
  oldest_pending_at: Date | null;
}

async function healthOf(db: Db, endpointIds: string[]): Promise<Map<string, EndpointHealthRow>> {
  if (endpointIds.length === 0) return new Map();
  const rows = await db.$queryRaw<EndpointHealthRow[]>`
    SELECT endpoint_id::text AS endpoint_id, count(*) AS pending, min(created_at) AS oldest_pending_at
    FROM webhook_deliveries
    WHERE status = 'pending' AND endpoint_id = ANY(${endpointIds}::uuid[])
    GROUP BY endpoint_id`;
  return new Map(rows.map((row) => [row.endpoint_id, row]));
}

const iso = (date: Date | null | undefined) => (date ? date.toISOString() : null);

function viewOf(endpoint: WebhookEndpoint, health: EndpointHealthRow | undefined): WebhookEndpointView {
  return {
    id: endpoint.id,
    url: endpoint.url,
    events: endpoint.events.length > 0 ? (endpoint.events as WebhookEndpointView["events"]) : null,
    description: endpoint.description,
    enabled: endpoint.enabled,
    disabledReason: endpoint.disabledReason,
    createdAt: endpoint.createdAt.toISOString(),
    health: {
      pending: Number(health?.pending ?? 0),
      oldestPendingAt: iso(health?.oldest_pending_at),
      failingSince: iso(endpoint.failingSince),
      consecutiveFailures: endpoint.consecutiveFailures,
      lastDeliveredAt: iso(endpoint.lastDeliveredAt),
    },
  };
}

async function viewsOf(db: Db, endpoints: WebhookEndpoint[]): Promise<WebhookEndpointView[]> {
  const health = await healthOf(
    db,
    endpoints.map((e) => e.id),
  );
  return endpoints.map((endpoint) => viewOf(endpoint, health.get(endpoint.id)));
}

export async function createEndpoint(
  { db, cipher, policy }: EndpointStoreDeps,
  companyId: string,
  input: CreateWebhookEndpointRequest,
): Promise<WebhookEndpointView & { secret: string }> {
  const url = checkTargetUrl(input.url, policy).toString();
  const id = crypto.randomUUID();
  const secret = generateEndpointSecret();
  const endpoint = await db.webhookEndpoint.create({
    data: {
      id,
      companyId,
      url,
      description: input.description ?? null,
      events: input.events ?? [],
      secretEnc: encryptEndpointSecret(cipher, id, secret),
    },
  });
  return { ...viewOf(endpoint, undefined), secret };
}

/** A company's endpoints (what `/v1` shows it). */
export async function listEndpoints(db: Db, companyId: string): Promise<WebhookEndpointView[]> {
  return (await listEndpointsWithCompany(db, companyId)).map(({ companyId: _owner, ...view }) => view);
}

/** Every endpoint with the company owning it, or one company's (the operators' CLI and console). */
export async function listEndpointsWithCompany(
  db: Db,
  companyId?: string,
): Promise<Array<WebhookEndpointView & { companyId: string }>> {
  const endpoints = await db.webhookEndpoint.findMany({
    where: companyId === undefined ? {} : { companyId },
    orderBy: [{ createdAt: "asc" }, { id: "asc" }],
  });
  const views = await viewsOf(db, endpoints);
  return views.map((view, i) => ({ ...view, companyId: endpoints[i]!.companyId }));
}

/** Ids are UUIDs: anything else names no endpoint or delivery (and never reaches a uuid cast). */
const isRowId = (id: string) => /^[0-9a-f-]{36}$/i.test(id);

async function findOwned(db: Db, companyId: string, id: string): Promise<WebhookEndpoint | null> {
  if (!isRowId(id)) return null;
  const endpoint = await db.webhookEndpoint.findUnique({ where: { id } });
  return endpoint && endpoint.companyId === companyId ? endpoint : null;
}

export async function getEndpoint(
  db: Db,
  companyId: string,
  id: string,
): Promise<WebhookEndpointView | null> {
  const endpoint = await findOwned(db, companyId, id);
  return endpoint ? (await viewsOf(db, [endpoint]))[0]! : null;
}

/**
 * Changes url, events, description or enabled. Enabling an endpoint starts afresh: its failing streak,
 * circuit and disabled reason are cleared, and what waited for it is attempted at once.
 */
export async function updateEndpoint(
  { db, policy }: Pick<EndpointStoreDeps, "db" | "policy">,
  companyId: string,
  id: string,
  patch: UpdateWebhookEndpointRequest,
): Promise<WebhookEndpointView | null> {
  const endpoint = await findOwned(db, companyId, id);
  if (!endpoint) return null;
  const enabling = patch.enabled === true && !endpoint.enabled;
  const updated = await db.$transaction(async (tx) => {
    const row = await tx.webhookEndpoint.update({
      where: { id },
      data: {
        ...(patch.url !== undefined ? { url: checkTargetUrl(patch.url, policy).toString() } : {}),
        ...(patch.events !== undefined ? { events: patch.events ?? [] } : {}),
        ...(patch.description !== undefined ? { description: patch.description } : {}),
        ...(patch.enabled !== undefined ? { enabled: patch.enabled } : {}),
        ...(patch.enabled === false ? { disabledReason: "disabled by the company" } : {}),
        ...(enabling
          ? { disabledReason: null, failingSince: null, consecutiveFailures: 0, circuitOpenUntil: null }
          : {}),
      },
    });
    if (enabling) {
      await tx.webhookDelivery.updateMany({
        where: { endpointId: id, status: "pending" },
        data: { nextAttemptAt: new Date() },
      });
    }
    return row;
  });
  return (await viewsOf(db, [updated]))[0]!;
}

/** Disables an endpoint (CLI, console) with a reason shown to the company. */
export async function disableEndpoint(db: Db, id: string, reason: string): Promise<boolean> {
  const result = await db.webhookEndpoint.updateMany({
    where: { id },
    data: { enabled: false, disabledReason: reason },
  });
  return result.count > 0;
}

export async function deleteEndpoint(db: Db, companyId: string, id: string): Promise<boolean> {
  const endpoint = await findOwned(db, companyId, id);
  if (!endpoint) return false;
  await db.webhookEndpoint.delete({ where: { id } });
  return true;
}

/**
 * A new secret signs from now on; the one it replaces keeps signing beside it for `overlapMs`, so a
 * receiver can switch without refusing a single delivery.
 */
export async function rotateEndpointSecret(
  { db, cipher }: Pick<EndpointStoreDeps, "db" | "cipher">,
  companyId: string,
  id: string,
  overlapMs = SECRET_OVERLAP_MS,
  now = new Date(),
): Promise<{ secret: string; previousSecretExpiresAt: string } | null> {
  const endpoint = await findOwned(db, companyId, id);
  if (!endpoint) return null;
  const secret = generateEndpointSecret();
  const previousSecretExpiresAt = new Date(now.getTime() + overlapMs);
  await db.webhookEndpoint.update({
    where: { id },
    data: {
      secretEnc: encryptEndpointSecret(cipher, id, secret),
      previousSecretEnc: endpoint.secretEnc,
      previousSecretExpiresAt,
    },
  });
  return { secret, previousSecretExpiresAt: previousSecretExpiresAt.toISOString() };
}

function deliveryViewOf(delivery: WebhookDelivery & { attemptLog: WebhookAttempt[] }): WebhookDeliveryView {
  return {
    id: delivery.id,
    webhookId: delivery.webhookId,
    type: delivery.eventType as WebhookDeliveryView["type"],
    status: delivery.status,
    createdAt: delivery.createdAt.toISOString(),
    nextAttemptAt: delivery.status === "pending" ? delivery.nextAttemptAt.toISOString() : null,
    deliveredAt: iso(delivery.deliveredAt),
    attempts: delivery.attemptLog.map((attempt) => ({
      attemptedAt: attempt.attemptedAt.toISOString(),
      statusCode: attempt.statusCode,
      durationMs: attempt.durationMs,
      error: attempt.error,
      nextAttemptAt: iso(attempt.nextAttemptAt),
    })),
  };
}

/** An endpoint's deliveries, newest first, keyset-paged by (created_at, id). */
export async function listDeliveries(
  db: Db,
  companyId: string,
  endpointId: string,
  query: { limit: number; status?: WebhookDelivery["status"]; before?: { createdAt: Date; id: string } },
): Promise<{ data: WebhookDeliveryView[]; next: { createdAt: Date; id: string } | null } | null> {
  if (!(await findOwned(db, companyId, endpointId))) return null;
  const rows = await db.webhookDelivery.findMany({
    where: {
      endpointId,
      ...(query.status ? { status: query.status } : {}),
      ...(query.before
        ? {
            OR: [
              { createdAt: { lt: query.before.createdAt } },
              { createdAt: query.before.createdAt, id: { lt: query.before.id } },
            ],
          }
        : {}),
    },
    orderBy: [{ createdAt: "desc" }, { id: "desc" }],
    take: query.limit + 1,
    include: { attemptLog: { orderBy: { attemptedAt: "asc" } } },
  });
  const page = rows.slice(0, query.limit);
  const last = page.at(-1);
  return {
    data: page.map(deliveryViewOf),
    next: rows.length > query.limit && last ? { createdAt: last.createdAt, id: last.id } : null,
  };
}

/** Attempts a delivery again now (a failed one included), keeping its `webhook-id`. */
export async function retryDelivery(
  db: Db,
  companyId: string,
  endpointId: string,
  deliveryId: string,
): Promise<WebhookDeliveryView | null> {
  if (!(await findOwned(db, companyId, endpointId))) return null;
  if (!isRowId(deliveryId)) return null;
  const result = await db.webhookDelivery.updateMany({
    where: { id: deliveryId, endpointId },
    // The retry schedule starts over (the attempt log keeps every earlier attempt).
    data: { status: "pending", nextAttemptAt: new Date(), deliveredAt: null, attempts: 0 },
  });
  if (result.count === 0) return null;
  const delivery = await db.webhookDelivery.findUniqueOrThrow({
    where: { id: deliveryId },
    include: { attemptLog: { orderBy: { attemptedAt: "asc" } } },
  });
  return deliveryViewOf(delivery);
}

/**
 * Sends an endpoint's deliveries created since `since` again, in their original order (the CLI's
 * `webhooks replay`, the console): for a receiver that lost what it had acknowledged.
 */
export async function replayDeliveries(db: Db, endpointId: string, since: Date): Promise<number> {
  if (!isRowId(endpointId)) return 0;
  const result = await db.webhookDelivery.updateMany({
    where: { endpointId, createdAt: { gte: since } },
    // The retry schedule starts over (the attempt log keeps every earlier attempt).
    data: { status: "pending", nextAttemptAt: new Date(), deliveredAt: null, attempts: 0 },
  });
  return result.count;
}
