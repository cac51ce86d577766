import type { Bus } from "@switchboard/bus";
import type { TokenCipher } from "@switchboard/crypto";
import { type Db, postgresAnswers } from "@switchboard/db";
import type { TargetPolicy } from "@switchboard/webhooks";
import type { Logger } from "pino";
import { type DeliveryLoop, startDeliveryLoop } from "./delivery-loop";
import { fanOutFloors, startFanOut } from "./fan-out";
import type { DispatcherMetrics } from "./metrics";

export interface DispatcherSettings {
  schedule: number[];
  timeoutMs: number;
  disableAfterMs: number;
  maxInFlight: number;
  endpointConcurrency: number;
  circuitThreshold: number;
  circuitOpenMs: number;
  pollIntervalMs: number;
  retentionMs: number;
  fanOutConcurrency: number;
  /** How often the backlog gauges are read from the database and old deliveries removed. */
  housekeepingIntervalMs?: number;
}

export interface DispatcherDeps {
  bus: Bus;
  db: Db;
  cipher: TokenCipher;
  log: Logger;
  metrics: DispatcherMetrics;
  policy: TargetPolicy;
  settings: DispatcherSettings;
}

/** The webhook-dispatcher: fan-out consumers, the delivery loop, and housekeeping. */
export async function startDispatcher({ bus, db, cipher, log, metrics, policy, settings }: DispatcherDeps) {
  let loop: DeliveryLoop | undefined;
  const consumers = await startFanOut({
    bus,
    db,
    log,
    metrics,
    // The loop starts once the consumers exist (it reads their ack floors).
    onRecorded: () => loop?.poke(),
    probeDependencies: () => postgresAnswers(db, 2000),
    concurrency: settings.fanOutConcurrency,
  });

  loop = startDeliveryLoop({
    db,
    cipher,
    log,
    metrics,
    topology: bus.topology,
    policy,
    floors: fanOutFloors(bus),
    schedule: settings.schedule,
    timeoutMs: settings.timeoutMs,
    maxInFlight: settings.maxInFlight,
    endpointConcurrency: settings.endpointConcurrency,
    pollIntervalMs: settings.pollIntervalMs,
    disableAfterMs: settings.disableAfterMs,
    circuitThreshold: settings.circuitThreshold,
    circuitOpenMs: settings.circuitOpenMs,
  });
  const housekeeping = async () => {
    try {
      await metrics.refreshBacklog(db);
      // Delivered long ago: the log a company can read is bounded (attempts go with their delivery).
      await db.$executeRaw`
        DELETE FROM webhook_deliveries
        WHERE (status = 'delivered' AND delivered_at < now() - ${settings.retentionMs} * interval '1 millisecond')
           OR (status = 'failed' AND created_at < now() - ${2 * settings.retentionMs} * interval '1 millisecond')`;
      // Waiting longer than that (an endpoint disabled for weeks): given up, still in the log and retryable.
      const expired = await db.$executeRaw`
        UPDATE webhook_deliveries SET status = 'failed', locked_until = NULL
        WHERE status = 'pending' AND created_at < now() - ${settings.retentionMs} * interval '1 millisecond'`;
      if (expired > 0) {
        metrics.deliveriesFailed.inc(expired);
        log.warn(
          { expired },
          "webhook deliveries waited longer than WEBHOOK_DELIVERY_RETENTION; marked failed",
        );
      }
    } catch (error) {
      log.warn({ err: error }, "webhook housekeeping failed; trying again later");
    }
  };
  void housekeeping();
  const timer = setInterval(housekeeping, settings.housekeepingIntervalMs ?? 15_000);
  timer.unref();

  const running = loop;
  return {
    loop: running,
    async stop() {
      clearInterval(timer);
      await Promise.all(consumers.map((consumer) => consumer.stop()));
      await running.stop();
    },
  };
}
export type Dispatcher = Awaited<ReturnType<typeof startDispatcher>>;
