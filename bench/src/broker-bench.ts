import { createHash, randomUUID } from "node:crypto";
import { connectBus, deleteStreams, publishRaw } from "@switchboard/bus";
import { Headers } from "@switchboard/contracts";
import { uniqueId } from "@switchboard/local-system";
import { round } from "./resources";
import { quiet, services } from "./system";

export interface BrokerRun {
  inFlight: number;
  published: number;
  seconds: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
}

export interface BrokerBenchResult {
  entryBytes: number;
  runs: BrokerRun[];
  /** The best rate over the in-flight levels tried: the stage's limit. */
  bestPerSecond: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/**
 * Part 2: what JetStream takes from one Node process, publishing entries as the ingress does
 * (same streams and settings via connectBus, content-hash Nats-Msg-Id, trace headers, wait for the ack),
 * with 1, 16 and 128 publishes in flight.
 */
export async function benchBroker(seconds: number): Promise<BrokerBenchResult> {
  const bus = await connectBus({
    streams: "provision",
    servers: [services.natsUrl],
    name: "bench-broker",
    namespace: uniqueId("bb"),
    log: quiet,
  });
  const runs: BrokerRun[] = [];
  const sample = (n: number) =>
    JSON.stringify({
      id: `${600_000_000_000_000 + (n % 1000)}`,
      time: Date.now(),
      messaging: [
        {
          sender: { id: `${7_000_000_000_000_000 + (n % 500)}` },
          recipient: { id: `${600_000_000_000_000 + (n % 1000)}` },
          timestamp: Date.now(),
          message: {
            mid: `m_${n}_${randomUUID()}`,
            text: "Bonjour, la commande n°4512 est-elle partie ? Merci 🙏",
          },
        },
      ],
    });
  try {
    let counter = 0;
    for (const inFlight of [1, 16, 128]) {
      const latencies: number[] = [];
      const deadline = performance.now() + seconds * 1000;
      const started = performance.now();
      const worker = async () => {
        while (performance.now() < deadline) {
          const n = counter++;
          const data = sample(n);
          const pageId = `${600_000_000_000_000 + (n % 1000)}`;
          const at = performance.now();
          await publishRaw(bus.js, bus.topology.subjects.webhookEntry(pageId), data, {
            msgId: createHash("sha256").update(data).digest("base64url"),
            headers: { [Headers.traceId]: randomUUID(), [Headers.receivedAt]: Date.now() },
          });
          latencies.push(performance.now() - at);
        }
      };
      await Promise.all(Array.from({ length: inFlight }, worker));
      const elapsed = (performance.now() - started) / 1000;
      latencies.sort((a, b) => a - b);
      runs.push({
        inFlight,
        published: latencies.length,
        seconds: round(elapsed, 2),
        perSecond: round(latencies.length / elapsed),
        p50Ms: round(percentile(latencies, 50), 2),
        p99Ms: round(percentile(latencies, 99), 2),
      });
    }
    return {
      entryBytes: Buffer.byteLength(sample(0)),
      runs,
      bestPerSecond: Math.max(...runs.map((r) => r.perSecond)),
    };
  } finally {
    await deleteStreams(bus.jsm, bus.topology);
    await bus.drain();
  }
}
