import { Agent, request } from "node:http";
import autocannon from "autocannon";
import type { SignedBody } from "./payloads";
import { round } from "./resources";

export interface LoadResult {
  requests: number;
  durationSeconds: number;
  requestsPerSecond: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  non2xx: number;
  errors: number;
  timeouts: number;
}

export interface LoadOptions {
  url: string;
  connections: number;
  /** Run for this long… */
  durationSeconds?: number;
  /** …or until this many requests were answered. */
  amount?: number;
  /** Builds the body for the n-th request (0, 1, 2 …) as it is sent. */
  next: (n: number) => SignedBody;
  /** Told each answer: which request and its status. */
  onAnswer?: (n: number, status: number) => void;
  timeoutSeconds?: number;
}

/** Drives signed POSTs at full speed with autocannon, one request in flight per connection. */
export async function drive(options: LoadOptions): Promise<LoadResult> {
  let sent = 0;
  const started = performance.now();
  const result = await autocannon({
    url: options.url,
    connections: options.amount ? Math.min(options.connections, options.amount) : options.connections,
    pipelining: 1,
    timeout: options.timeoutSeconds ?? 10,
    ...(options.amount ? { amount: options.amount } : { duration: options.durationSeconds ?? 10 }),
    requests: [
      {
        method: "POST",
        setupRequest: (request, context) => {
          const n = sent++;
          const body = options.next(n);
          (context as { n?: number }).n = n;
          return {
            ...request,
            method: "POST",
            body: body.raw,
            headers: {
              "content-type": "application/json",
              "x-hub-signature-256": body.signature,
            },
          };
        },
        onResponse: (status, _body, context) => {
          const n = (context as { n?: number }).n;
          if (n !== undefined) options.onAnswer?.(n, status);
        },
      },
    ],
  });
  const durationSeconds = (performance.now() - started) / 1000;
  const answered = result["2xx"] + result.non2xx;
  return {
    requests: answered,
    durationSeconds: round(durationSeconds, 2),
    requestsPerSecond: round(answered / durationSeconds),
    p50Ms: result.latency.p50,
    p90Ms: result.latency.p90,
    p99Ms: result.latency.p99,
    maxMs: result.latency.max,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
  };
}

export interface PacedOptions {
  url: string;
  /** Requests per second, spread evenly (autocannon's rate sends each second's quota in a burst). */
  rate: number;
  durationSeconds: number;
  next: (n: number) => SignedBody;
  onAnswer?: (n: number, status: number) => void;
  timeoutSeconds?: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Sends at a fixed offered rate, as Meta does on a steady day: request n leaves at n / rate seconds. */
export async function paced(options: PacedOptions): Promise<LoadResult> {
  const target = new URL(options.url);
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const latencies: number[] = [];
  let non2xx = 0;
  let errors = 0;
  let timeouts = 0;
  const inFlight = new Set<Promise<void>>();
  const send = (n: number) => {
    const body = options.next(n);
    const at = performance.now();
    const done = new Promise<void>((resolve) => {
      const req = request(
        {
          agent,
          host: target.hostname,
          port: target.port,
          path: target.pathname,
          method: "POST",
          headers: {
            "content-type": "application/json",
            "content-length": Buffer.byteLength(body.raw),
            "x-hub-signature-256": body.signature,
          },
          timeout: (options.timeoutSeconds ?? 10) * 1000,
        },
        (res) => {
          res.resume();
          res.on("end", () => {
            latencies.push(performance.now() - at);
            const status = res.statusCode ?? 0;
            if (status < 200 || status >= 300) non2xx++;
            options.onAnswer?.(n, status);
            resolve();
          });
        },
      );
      req.on("timeout", () => {
        timeouts++;
        req.destroy(new Error("timeout"));
      });
      req.on("error", () => {
        errors++;
        resolve();
      });
      req.end(body.raw);
    });
    inFlight.add(done);
    void done.then(() => inFlight.delete(done));
  };
  const started = performance.now();
  const total = Math.round(options.rate * options.durationSeconds);
  let sent = 0;
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * options.rate));
      while (sent < due) send(sent++);
      if (sent >= total) {
        clearInterval(tick);
        resolve();
      }
    }, 2);
  });
  await Promise.all([...inFlight]);
  const durationSeconds = (performance.now() - started) / 1000;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  return {
    requests: latencies.length,
    durationSeconds: round(durationSeconds, 2),
    requestsPerSecond: round(latencies.length / durationSeconds),
    p50Ms: round(percentile(latencies, 50), 1),
    p90Ms: round(percentile(latencies, 90), 1),
    p99Ms: round(percentile(latencies, 99), 1),
    maxMs: round(latencies.at(-1) ?? 0, 1),
    non2xx,
    errors,
    timeouts,
  };
}
