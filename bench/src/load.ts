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
  /** Offered rate over all connections, req/s; full speed when omitted. */
  rate?: number;
  /** Builds the body for the n-th request (0, 1, 2 …) as it is sent. */
  next: (n: number) => SignedBody;
  /** Told each answer: which request and its status. */
  onAnswer?: (n: number, status: number) => void;
  timeoutSeconds?: number;
}

/** Drives signed POSTs with autocannon, one request in flight per connection. */
export async function drive(options: LoadOptions): Promise<LoadResult> {
  let sent = 0;
  const started = performance.now();
  const result = await autocannon({
    url: options.url,
    connections: options.connections,
    pipelining: 1,
    timeout: options.timeoutSeconds ?? 10,
    ...(options.amount ? { amount: options.amount } : { duration: options.durationSeconds ?? 10 }),
    ...(options.rate ? { overallRate: options.rate } : {}),
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
