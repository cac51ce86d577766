import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { env, loadConfig } from "@switchboard/config";
import { busTopology } from "@switchboard/contracts";
import { z } from "zod";
import { provisionStreams } from "./streams";

/** `512mb`, `1gb`, `100kb` or a bare number of bytes. */
export const byteSize = (fallback: string) =>
  z
    .preprocess((v) => (v === "" ? undefined : v), z.string().default(fallback))
    .transform((v, ctx) => {
      const match = /^(\d+)(b|kb|mb|gb)?$/i.exec(v.trim());
      if (!match) {
        ctx.addIssue({ code: "custom", message: "must be a size such as 512mb or 1gb" });
        return z.NEVER;
      }
      const unit = (match[2] ?? "b").toLowerCase() as "b";
      return Number(match[1]) * { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }[unit];
    });

const config = loadConfig(
  z.object({
    NATS_URL: env.natsUrl(),
    BUS_NAMESPACE: env.busNamespace(),
    NATS_STREAM_REPLICAS: env.positiveInt(1),
    /** Byte limits of the kept-for-replay streams; alerts fire at 80 %. */
    UNROUTED_STREAM_MAX_BYTES: byteSize("1gb"),
    DLQ_STREAM_MAX_BYTES: byteSize("1gb"),
    /** Meta retries one delivery for hours; JetStream drops a repeated entry within this window. */
    WEBHOOK_DUPLICATE_WINDOW: env.duration("10m"),
    /** Lowering replicas loses redundancy: only when an operator says so. */
    BUS_ALLOW_FEWER_REPLICAS: env.boolean(false),
    BUS_MIGRATE_WAIT: env.duration("2m"),
  }),
);

/** `pnpm bus:migrate`: the one place stream configuration is written (see provisionStreams). */
try {
  const nc = await connect({ servers: config.NATS_URL, name: "bus-migrate", maxReconnectAttempts: 10 });
  try {
    const jsm = await jetstreamManager(nc, { timeout: 20_000 });
    const changes = await provisionStreams(jsm, busTopology(config.BUS_NAMESPACE), {
      replicas: config.NATS_STREAM_REPLICAS,
      unroutedMaxBytes: config.UNROUTED_STREAM_MAX_BYTES,
      deadLetterMaxBytes: config.DLQ_STREAM_MAX_BYTES,
      duplicateWindowMs: config.WEBHOOK_DUPLICATE_WINDOW,
      allowFewerReplicas: config.BUS_ALLOW_FEWER_REPLICAS,
      waitMs: config.BUS_MIGRATE_WAIT,
      onRetry: (stream, error) =>
        console.log(`waiting for the cluster to place ${stream}: ${(error as Error)?.message ?? error}`),
    });
    for (const change of changes) {
      const detail = [...change.changes, ...change.kept].join("; ");
      console.log(`${change.stream}: ${change.action}${detail ? ` (${detail})` : ""}`);
    }
    console.log(
      `streams are up to date (namespace ${config.BUS_NAMESPACE}, R${config.NATS_STREAM_REPLICAS})`,
    );
  } finally {
    await nc.close();
  }
} catch (error) {
  console.error(`bus:migrate failed against ${config.NATS_URL.join(",")}: ${(error as Error).message}`);
  process.exit(1);
}
