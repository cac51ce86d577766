import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type BusTopology, busTopology } from "@switchboard/contracts";
import type { Logger } from "pino";
import { ensureStreams, type StreamOptions } from "./streams";

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

export interface BusOptions extends StreamOptions {
  servers: string[];
  name: string;
  namespace: string;
  log: Logger;
  /** Create or update the streams on connect (every service does; it is idempotent). */
  ensureStreams?: boolean;
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
  const jsm = await jetstreamManager(nc);
  if (options.ensureStreams !== false) await ensureStreams(jsm, topology, options);
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
