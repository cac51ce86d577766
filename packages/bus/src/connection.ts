import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type BusTopology, busTopology } from "@switchboard/contracts";
import type { Logger } from "pino";
import { type ProvisionOptions, provisionStreams, verifyStreams, whileClusterNotReady } from "./streams";

export interface Bus {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  topology: BusTopology;
  /** True while the client is connected to a server (not reconnecting, not closed). */
  isConnected(): boolean;
  /** Flushes what is buffered, lets subscriptions finish, then closes. */
  drain(): Promise<void>;
}

export interface BusOptions {
  servers: string[];
  name: string;
  namespace: string;
  log: Logger;
  publishTimeoutMs?: number;
  /**
   * What to do about the streams on connect. `verify` (default, every service and operator command):
   * check that they exist and change nothing. `provision`: create and update them — only the streams'
   * owner (`pnpm bus:migrate`) and test set-ups that own their namespace. `none`: skip.
   */
  streams?: "verify" | "provision" | "none";
  /** With `verify`, how long to wait for streams a migration job is still creating (default 30 s). */
  streamsWaitMs?: number;
  /** With `provision`: the sizes and replicas to apply. */
  provision?: ProvisionOptions;
}

export async function connectBus(options: BusOptions): Promise<Bus> {
  const { servers, name, namespace, log } = options;
  const nc = await connect({
    servers,
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 1000,
    // Otherwise every request (each JetStream publish) captures two stack traces up front, in case it
    // fails: 13 % of the ingress's CPU under load (pnpm bench). Errors still name the subject.
    noAsyncTraces: true,
  });
  let connected = true;
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === "disconnect") connected = false;
      if (status.type === "reconnect") connected = true;
      if (status.type === "disconnect" || status.type === "reconnect" || status.type === "error") {
        log.warn(
          { bus: status.type, server: "server" in status ? status.server : undefined },
          "bus connection status",
        );
      }
    }
  })();
  const topology = busTopology(namespace);
  // The manager asks for the account's JetStream info first; a cluster still electing its leader may not
  // answer yet.
  const jsm = await whileClusterNotReady(() => jetstreamManager(nc, { timeout: 10_000 }), {
    waitMs: options.streamsWaitMs ?? 30_000,
    onRetry: (error) => log.warn({ err: error }, "waiting for JetStream to answer"),
  }).catch(async (error: unknown) => {
    await nc.close().catch(() => undefined);
    throw error;
  });
  const streams = options.streams ?? "verify";
  if (streams === "provision") await provisionStreams(jsm, topology, options.provision);
  if (streams === "verify") {
    await verifyStreams(jsm, topology, {
      waitMs: options.streamsWaitMs ?? 30_000,
      onWait: (missing) => log.warn({ missing }, "waiting for JetStream streams (run `pnpm bus:migrate`)"),
    }).catch(async (error: unknown) => {
      await nc.close().catch(() => undefined);
      throw error;
    });
  }
  const js = jetstream(nc, { timeout: options.publishTimeoutMs ?? 5000 });
  return {
    nc,
    js,
    jsm,
    topology,
    isConnected: () => connected && !nc.isClosed(),
    async drain() {
      if (!nc.isClosed()) await nc.drain();
    },
  };
}
