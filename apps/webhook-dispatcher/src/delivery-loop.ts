import type { BusTopology } from "@switchboard/contracts";
import { endpointDisabledEventId, type WebhookEndpointDisabledEvent } from "@switchboard/contracts";
import type { TokenCipher } from "@switchboard/crypto";
import type { Db } from "@switchboard/db";
import {
  type DeliveryOutcome,
  nextAttemptDelay,
  postDelivery,
  signDelivery,
  signingSecrets,
  type TargetPolicy,
} from "@switchboard/webhooks";
import type { Logger } from "pino";
import type { DeliverySource } from "./fan-out";
import type { DispatcherMetrics } from "./metrics";

/**
 * The delivery loop: claims due deliveries from PostgreSQL and POSTs them, signed. What it guarantees:
 * - order per conversation (ordering key): a delivery is claimed only when no earlier one of its key is
 *   still pending, and only below the fan-out's ack floor (every earlier event has its row);
 * - one attempt at a time per delivery across replicas (a lease, `locked_until`); a replica killed
 *   mid-attempt leaves its lease to run out and another replica attempts again (at least once);
 * - a slow or dead endpoint never slows others: at most `endpointConcurrency` attempts per endpoint at
 *   once, and after `circuitThreshold` failures in a row its circuit opens for `circuitOpenMs`.
 */
export interface DeliveryLoopOptions {
  db: Db;
  cipher: TokenCipher;
  log: Logger;
  metrics: DispatcherMetrics;
  topology: BusTopology;
  policy: TargetPolicy;
  floors: () => Promise<Record<DeliverySource, number>>;
  /** Delay after each failed attempt; a delivery fails for good once it is used up. */
  schedule: number[];
  timeoutMs: number;
  maxInFlight: number;
  endpointConcurrency: number;
  pollIntervalMs: number;
  disableAfterMs: number;
  circuitThreshold: number;
  circuitOpenMs: number;
}

interface ClaimedDelivery {
  id: string;
  endpoint_id: string;
  webhook_id: string;
  event_type: string;
  ordering_key: string;
  body: string;
  attempts: number;
  created_at: Date;
}

/** Beyond the attempt's timeout, time to write its outcome before the lease runs out. */
const LEASE_MARGIN_MS = 10_000;

/** Longest an error or a response excerpt stored with an attempt. */
const MAX_ERROR_CHARS = 300;

/** The attempt log's row for one attempt (what `GET …/deliveries` shows). */
const attemptRow = (
  delivery: ClaimedDelivery,
  outcome: DeliveryOutcome,
  at: Date,
  result: { error: string | null; nextAttemptAt?: Date | null },
) => ({
  deliveryId: delivery.id,
  attemptedAt: at,
  statusCode: outcome.statusCode,
  durationMs: Math.round(outcome.durationMs),
  ...result,
});

export function startDeliveryLoop(options: DeliveryLoopOptions) {
  const { db, log, metrics } = options;
  const inFlight = new Set<Promise<void>>();
  let stopping = false;
  let wake: (() => void) | undefined;
  let pokedWhileClaiming = false;
  // Covers the attempt and the write of its outcome: a lease that runs out means the replica is gone.
  const leaseMs = options.timeoutMs + LEASE_MARGIN_MS;

  const claim = async (limit: number): Promise<ClaimedDelivery[]> => {
    const floors = await options.floors();
    return db.$queryRaw<ClaimedDelivery[]>`
      WITH in_flight AS (
        SELECT endpoint_id, count(*) AS n FROM webhook_deliveries
        WHERE status = 'pending' AND locked_until > now()
        GROUP BY endpoint_id
      ), candidates AS (
        SELECT d.id, d.endpoint_id, d.next_attempt_at,
               row_number() OVER (PARTITION BY d.endpoint_id ORDER BY d.next_attempt_at, d.stream_seq) AS rank
        FROM webhook_deliveries d
        JOIN webhook_endpoints e ON e.id = d.endpoint_id
        WHERE d.status = 'pending' AND d.next_attempt_at <= now()
          AND (d.locked_until IS NULL OR d.locked_until <= now())
          AND e.enabled AND (e.circuit_open_until IS NULL OR e.circuit_open_until <= now())
          AND d.stream_seq <= CASE d.source WHEN 'domain' THEN ${floors.domain}::bigint
                                            ELSE ${floors.pages}::bigint END
          AND NOT EXISTS (
            SELECT 1 FROM webhook_deliveries p
            WHERE p.endpoint_id = d.endpoint_id AND p.ordering_key = d.ordering_key
              AND p.source = d.source AND p.status = 'pending' AND p.stream_seq < d.stream_seq)
      ), chosen AS (
        SELECT c.id FROM candidates c LEFT JOIN in_flight f ON f.endpoint_id = c.endpoint_id
        WHERE c.rank <= ${options.endpointConcurrency} - COALESCE(f.n, 0)
        ORDER BY c.rank, c.next_attempt_at
        LIMIT ${limit}
      )
      UPDATE webhook_deliveries d
      SET locked_until = now() + ${leaseMs} * interval '1 millisecond'
      FROM chosen
      WHERE d.id = chosen.id AND d.status = 'pending'
        AND (d.locked_until IS NULL OR d.locked_until <= now())
      RETURNING d.id::text, d.endpoint_id::text, d.webhook_id, d.event_type, d.ordering_key, d.body,
                d.attempts, d.created_at`;
  };

  const recordSuccess = async (delivery: ClaimedDelivery, outcome: DeliveryOutcome, at: Date) => {
    await db.$transaction([
      db.webhookAttempt.create({ data: attemptRow(delivery, outcome, at, { error: null }) }),
      db.webhookDelivery.update({
        where: { id: delivery.id },
        data: {
          status: "delivered",
          deliveredAt: new Date(),
          attempts: { increment: 1 },
          lastAttemptAt: at,
          lockedUntil: null,
        },
      }),
      db.webhookEndpoint.update({
        where: { id: delivery.endpoint_id },
        data: {
          consecutiveFailures: 0,
          failingSince: null,
          circuitOpenUntil: null,
          lastDeliveredAt: new Date(),
        },
      }),
    ]);
  };

  const recordFailure = async (delivery: ClaimedDelivery, outcome: DeliveryOutcome, at: Date) => {
    const attempts = delivery.attempts + 1;
    const delay = nextAttemptDelay(options.schedule, attempts);
    const nextAttemptAt = delay === undefined ? null : new Date(Date.now() + delay);
    const error = (outcome.error ?? "failed").slice(0, MAX_ERROR_CHARS);
    const [, , endpointRows] = await db.$transaction([
      db.webhookAttempt.create({ data: attemptRow(delivery, outcome, at, { error, nextAttemptAt }) }),
      db.webhookDelivery.update({
        where: { id: delivery.id },
        data: {
          attempts,
          lastAttemptAt: at,
          lockedUntil: null,
          ...(nextAttemptAt ? { nextAttemptAt } : { status: "failed" }),
        },
      }),
      db.$queryRaw<Array<{ failing_since: Date; consecutive_failures: number; enabled: boolean }>>`
        UPDATE webhook_endpoints
        SET consecutive_failures = consecutive_failures + 1,
            failing_since = COALESCE(failing_since, ${at}),
            circuit_open_until = CASE WHEN consecutive_failures + 1 >= ${options.circuitThreshold}
              THEN now() + ${options.circuitOpenMs} * interval '1 millisecond' ELSE circuit_open_until END,
            updated_at = now()
        WHERE id = ${delivery.endpoint_id}::uuid
        RETURNING failing_since, consecutive_failures, enabled`,
    ]);
    if (!nextAttemptAt) {
      metrics.deliveriesFailed.inc();
      log.warn(
        { endpointId: delivery.endpoint_id, deliveryId: delivery.id, attempts, error },
        "webhook delivery failed for good (retry schedule used up)",
      );
    }
    const endpoint = endpointRows[0];
    if (endpoint?.enabled && Date.now() - endpoint.failing_since.getTime() >= options.disableAfterMs) {
      await disableFailingEndpoint(delivery.endpoint_id, endpoint.failing_since, error);
    }
  };

  /**
   * Switches off an endpoint failing for `disableAfterMs`, and announces it in the same transaction
   * through the domain event outbox (the message-service's relay publishes it).
   */
  const disableFailingEndpoint = async (endpointId: string, failingSince: Date, lastError: string) => {
    const days = ((Date.now() - failingSince.getTime()) / 86_400_000).toFixed(1);
    const reason = `every delivery failed since ${failingSince.toISOString()} (${days} days); last error: ${lastError}`;
    const disabled = await db.$transaction(async (tx) => {
      const rows = await tx.$queryRaw<Array<{ company_id: string; url: string }>>`
        UPDATE webhook_endpoints SET enabled = false, disabled_reason = ${reason}, updated_at = now()
        WHERE id = ${endpointId}::uuid AND enabled
        RETURNING company_id, url`;
      const row = rows[0];
      if (!row) return undefined;
      const event: WebhookEndpointDisabledEvent = {
        type: "webhook_endpoint.disabled",
        endpointId,
        companyId: row.company_id,
        url: row.url,
        reason,
        failingSince: failingSince.getTime(),
        occurredAt: Date.now(),
      };
      await tx.domainEventOutbox.create({
        data: {
          id: endpointDisabledEventId(event),
          subject: options.topology.subjects.domainEvent(event.type, event.companyId),
          payload: event,
        },
      });
      return event;
    });
    if (disabled) {
      metrics.endpointsDisabled.inc();
      log.error(
        { endpointId, companyId: disabled.companyId, failingSince: failingSince.toISOString() },
        "webhook endpoint disabled after failing too long",
      );
    }
  };

  const attempt = async (delivery: ClaimedDelivery) => {
    const endpoint = await db.webhookEndpoint.findUnique({ where: { id: delivery.endpoint_id } });
    if (!endpoint) return;
    const at = new Date();
    const body = delivery.body;
    const headers = signDelivery({
      id: delivery.webhook_id,
      timestampSeconds: Math.floor(at.getTime() / 1000),
      body,
      secrets: signingSecrets(options.cipher, endpoint, at),
    });
    const outcome = await postDelivery({
      url: endpoint.url,
      headers: { ...headers },
      body,
      timeoutMs: options.timeoutMs,
      policy: options.policy,
    });
    metrics.observeAttempt(endpoint.id, outcome);
    if (outcome.ok) {
      await recordSuccess(delivery, outcome, at);
      metrics.deliveryLag.observe((Date.now() - delivery.created_at.getTime()) / 1000);
      log.debug(
        {
          endpointId: endpoint.id,
          deliveryId: delivery.id,
          type: delivery.event_type,
          key: delivery.ordering_key,
        },
        "webhook delivered",
      );
    } else {
      await recordFailure(delivery, outcome, at);
      log.info(
        {
          endpointId: endpoint.id,
          deliveryId: delivery.id,
          type: delivery.event_type,
          key: delivery.ordering_key,
          statusCode: outcome.statusCode,
          error: outcome.error,
          attempt: delivery.attempts + 1,
        },
        "webhook delivery attempt failed",
      );
    }
  };

  const run = (delivery: ClaimedDelivery) => {
    const task = attempt(delivery)
      .catch((error: unknown) => {
        // The outcome could not be written (database down): the lease runs out and it is attempted again.
        log.error({ err: error, deliveryId: delivery.id }, "webhook delivery could not be recorded");
      })
      .finally(() => {
        inFlight.delete(task);
        wake?.();
      });
    inFlight.add(task);
  };

  const loop = (async () => {
    while (!stopping) {
      const room = options.maxInFlight - inFlight.size;
      let claimed = 0;
      if (room > 0) {
        pokedWhileClaiming = false;
        try {
          const batch = await claim(room);
          claimed = batch.length;
          for (const delivery of batch) run(delivery);
        } catch (error) {
          log.warn({ err: error }, "could not claim webhook deliveries; retrying");
        }
      }
      if (stopping) break;
      // A full batch may have more behind it; otherwise sleep until poked or the next poll.
      if (claimed > 0 && claimed === room) continue;
      if (pokedWhileClaiming) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, options.pollIntervalMs);
        function done() {
          clearTimeout(timer);
          wake = undefined;
          resolve();
        }
        wake = done;
      });
    }
  })();

  return {
    /** Something was queued or finished: look again now. */
    poke() {
      pokedWhileClaiming = true;
      wake?.();
    },
    inFlight: () => inFlight.size,
    /** Stops claiming and waits for the attempts in flight to be recorded. */
    async stop() {
      stopping = true;
      wake?.();
      await loop;
      await Promise.allSettled([...inFlight]);
    },
  };
}
export type DeliveryLoop = ReturnType<typeof startDeliveryLoop>;
