import http, { type IncomingMessage } from "node:http";
import https from "node:https";
import { checkTargetUrl, guardedLookup, type TargetPolicy, TargetRefusedError } from "./target-policy";

export interface DeliveryRequest {
  url: string;
  /** The signed Standard Webhooks headers (and any others); their values never appear in errors. */
  headers: Record<string, string>;
  body: string;
  /** Bounds the whole attempt: connect, response headers and the body we read. */
  timeoutMs: number;
  /** How much of the response body is read (default 4096); the rest is never buffered. */
  maxResponseBytes?: number;
  policy: TargetPolicy;
}

export interface DeliveryOutcome {
  /** The receiver answered 2xx. */
  ok: boolean;
  /** null when no response was received (refused, network error, timeout). */
  statusCode: number | null;
  durationMs: number;
  /** Short and readable, safe to store and show: never contains header values. */
  error: string | null;
  /** The first maxResponseBytes of the response body as UTF-8; store it truncated, never log it whole. */
  responseSnippet: string | null;
}

const DEFAULT_MAX_RESPONSE_BYTES = 4096;
const USER_AGENT = "Switchboard-Webhooks/1";
// A Location header is the receiver's text; keep what we store of it short.
const MAX_LOCATION_CHARS = 200;

const NETWORK_ERRORS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  EPIPE: "connection closed while sending",
  ETIMEDOUT: "connection timed out",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "DNS lookup failed (temporary)",
  HPE_HEADER_OVERFLOW: "response headers too large",
};

/** A short description of a failed connection; only the error code matters to whoever reads it. */
function describeNetworkError(error: unknown): string {
  if (error instanceof TargetRefusedError) return `refused: ${error.reason}`;
  // With autoSelectFamily, Node reports every address that failed in one AggregateError.
  const first = error instanceof AggregateError && error.errors.length > 0 ? error.errors[0] : error;
  const code = (first as NodeJS.ErrnoException | undefined)?.code ?? (error as NodeJS.ErrnoException).code;
  if (code && NETWORK_ERRORS[code]) return NETWORK_ERRORS[code];
  if (code?.startsWith("ERR_TLS_") || code?.includes("CERT") || code?.startsWith("ERR_SSL_")) {
    return `TLS error (${code})`;
  }
  return code ? `network error (${code})` : "network error";
}

/**
 * One delivery attempt: POST the body to the endpoint and report what happened. A failed delivery is
 * an outcome, never an exception (only a programmer error throws). Redirects are not followed: the
 * target policy judged this URL, not wherever a Location header points.
 */
export async function postDelivery(request: DeliveryRequest): Promise<DeliveryOutcome> {
  const maxResponseBytes = request.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  if (!Number.isFinite(request.timeoutMs) || request.timeoutMs <= 0) {
    throw new Error("timeoutMs must be a positive number");
  }
  if (!Number.isInteger(maxResponseBytes) || maxResponseBytes < 0) {
    throw new Error("maxResponseBytes must be a non-negative integer");
  }
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);

  let target: URL;
  try {
    target = checkTargetUrl(request.url, request.policy);
  } catch (error) {
    if (!(error instanceof TargetRefusedError)) throw error;
    return {
      ok: false,
      statusCode: null,
      durationMs: elapsed(),
      error: `refused: ${error.reason}`,
      responseSnippet: null,
    };
  }

  const body = Buffer.from(request.body, "utf8");
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) headers[name.toLowerCase()] = value;
  headers["content-type"] = "application/json";
  headers["user-agent"] = USER_AGENT;
  headers["content-length"] = String(body.length);

  const transport = target.protocol === "https:" ? https : http;
  return new Promise<DeliveryOutcome>((resolve) => {
    let settled = false;
    const finish = (outcome: Omit<DeliveryOutcome, "durationMs">) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // Destroying the request also closes the socket: no more of the body is read.
      req.destroy();
      resolve({ ...outcome, durationMs: elapsed() });
    };

    const req = transport.request(target, {
      method: "POST",
      headers,
      lookup: guardedLookup(request.policy),
      // A fresh connection per attempt: each one is resolved and judged by guardedLookup, and
      // destroying it on timeout or overflow never touches a pooled socket.
      agent: false,
    });

    const timer = setTimeout(() => {
      finish({
        ok: false,
        statusCode: null,
        error: `timed out after ${request.timeoutMs} ms`,
        responseSnippet: null,
      });
    }, request.timeoutMs);

    req.on("error", (error) => {
      finish({ ok: false, statusCode: null, error: describeNetworkError(error), responseSnippet: null });
    });

    req.on("response", (res: IncomingMessage) => {
      const statusCode = res.statusCode ?? 0;
      // Errors after we have finished (the socket we destroyed) are expected and ignored.
      res.on("error", () => {});
      if (statusCode >= 300 && statusCode < 400) {
        const location = res.headers.location?.slice(0, MAX_LOCATION_CHARS) ?? "(no location)";
        finish({
          ok: false,
          statusCode,
          error: `redirect to ${location} not followed`,
          responseSnippet: null,
        });
        return;
      }

      const ok = statusCode >= 200 && statusCode < 300;
      const chunks: Buffer[] = [];
      let received = 0;
      const answer = () => {
        const snippet = Buffer.concat(chunks).toString("utf8");
        finish({ ok, statusCode, error: ok ? null : `HTTP ${statusCode}`, responseSnippet: snippet });
      };
      if (maxResponseBytes === 0) return answer();
      res.on("data", (chunk: Buffer) => {
        // Keep only what fits: a huge (or endless) body is cut off, never buffered.
        const room = maxResponseBytes - received;
        if (room <= 0) return;
        chunks.push(chunk.subarray(0, room));
        received += Math.min(chunk.length, room);
        if (received >= maxResponseBytes) answer();
      });
      res.on("end", answer);
      // Also after a body cut short: the receiver already gave its answer in the status line.
      res.on("close", answer);
    });

    req.end(body);
  });
}
