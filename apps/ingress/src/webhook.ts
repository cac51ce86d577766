import { createHmac, hash, randomUUID, timingSafeEqual } from "node:crypto";
import type { Bus } from "@switchboard/bus";
import {
  appObjectLabel,
  describeIssues,
  ENTRY_WITHOUT_PAGE,
  Headers,
  platformOfObject,
  quoteLongIds,
  unroutedHeaders,
  WebhookEntryAddress,
  WebhookEnvelope,
} from "@switchboard/contracts";
import type { Logger } from "@switchboard/observability";
import express, {
  type ErrorRequestHandler,
  type Express,
  type Request,
  type RequestHandler,
  type Response,
} from "express";
import { createEntryPublisher } from "./large-entries";
import type { IngressMetrics } from "./metrics";

export interface WebhookOptions {
  appSecret: string;
  /**
   * The Instagram Login app's own secret (INSTAGRAM_APP_SECRET), when it differs: a body signed with
   * either is Meta's.
   */
  instagramAppSecret?: string;
  verifyToken: string;
  bus: Bus;
  metrics: IngressMetrics;
  log: Logger;
  bodyLimit: string;
  publishTimeoutMs: number;
  /** Replicas of the large-entries bucket (NATS_STREAM_REPLICAS). */
  replicas: number;
}

/** Bodies the ingress could not split into entries are kept whole under this pseudo page. */
const INVALID_BODIES = "_invalid";

const SIGNATURE_PREFIX = "sha256=";

/** Constant-time comparison of two strings of any length. */
function safeEqual(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

export type SignatureProblem = "missing" | "wrong_prefix" | "wrong_length" | "digest_mismatch";

/** What an operator should look at for each rejection; never the body or the secret. */
const SIGNATURE_HINTS: Record<SignatureProblem, string> = {
  missing: "no X-Hub-Signature-256 header: Meta signs every delivery, so this did not come from Meta",
  wrong_prefix: "X-Hub-Signature-256 does not start with sha256=",
  wrong_length: "the digest after sha256= is not 64 hex digits",
  digest_mismatch:
    "the body's HMAC-SHA256 does not match: is FB_APP_SECRET (or INSTAGRAM_APP_SECRET) the app's secret?",
};

/**
 * Why a body's `X-Hub-Signature-256` is refused, or undefined when it is Meta's. Meta signs the raw
 * bytes (with its own escaping), so the check runs before any parsing.
 */
export function signatureProblem(
  body: Buffer,
  header: string | undefined,
  appSecret: string | readonly string[],
): SignatureProblem | undefined {
  if (!header) return "missing";
  if (!header.startsWith(SIGNATURE_PREFIX)) return "wrong_prefix";
  const given = Buffer.from(header.slice(SIGNATURE_PREFIX.length), "hex");
  // Buffer.from stops at the first non-hex digit, so this also catches a digest that is not hex.
  if (header.length !== SIGNATURE_PREFIX.length + 64 || given.length !== 32) return "wrong_length";
  for (const secret of typeof appSecret === "string" ? [appSecret] : appSecret) {
    if (timingSafeEqual(given, createHmac("sha256", secret).update(body).digest())) return undefined;
  }
  return "digest_mismatch";
}

export function hasValidSignature(body: Buffer, header: string | undefined, appSecret: string): boolean {
  return signatureProblem(body, header, appSecret) === undefined;
}

/**
 * One warning per reason per interval, with how many were suppressed since the last one: a sender
 * retrying with a wrong secret must not flood the log, and the first line must still say why.
 */
export function throttledWarning(log: Logger, message: string, intervalMs = 10_000) {
  const last = new Map<string, { at: number; suppressed: number }>();
  return (key: string, fields: Record<string, unknown>) => {
    const now = Date.now();
    const seen = last.get(key);
    if (seen && now - seen.at < intervalMs) {
      seen.suppressed++;
      return;
    }
    log.warn({ ...fields, suppressed: seen?.suppressed ?? 0 }, message);
    last.set(key, { at: now, suppressed: 0 });
  };
}

/**
 * Runs the publishes of every request that finished reading its body in this event-loop turn together.
 * nats.js writes its buffer to the socket in a microtask, so publishing straight from each request's
 * callback costs one socket write per request; deferring to `setImmediate` (right after the poll phase,
 * no added wait) sends them all in one write. Under load that write was a quarter of the ingress's CPU.
 */
function publishTogether() {
  let turn: Array<() => void> | undefined;
  return <T>(publish: () => Promise<T>): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      if (!turn) {
        const queued: Array<() => void> = [];
        turn = queued;
        setImmediate(() => {
          turn = undefined;
          for (const run of queued) run();
        });
      }
      turn.push(() => {
        try {
          publish().then(resolve, reject);
        } catch (error) {
          reject(error);
        }
      });
    });
}

/** Per-page metric children, so the hot path does not hash label objects for every entry. */
function pageMetrics(metrics: IngressMetrics) {
  const byPage = new Map<
    string,
    {
      entries: ReturnType<IngressMetrics["entries"]["labels"]>;
      duplicates: ReturnType<IngressMetrics["duplicates"]["labels"]>;
      lastReceived: ReturnType<IngressMetrics["lastReceived"]["labels"]>;
    }
  >();
  return (pageId: string) => {
    // Keyed by the bounded label (the first pages, then `_other`): the map stays small at 100,000 pages.
    const label = metrics.pageLabel(pageId);
    let page = byPage.get(label);
    if (!page) {
      page = {
        entries: metrics.entries.labels(label),
        duplicates: metrics.duplicates.labels(label),
        lastReceived: metrics.lastReceived.labels(label),
      };
      byPage.set(label, page);
    }
    return page;
  };
}

/** "5mb", "64kb", "1024" → bytes (the `WEBHOOK_BODY_LIMIT` forms). */
export function parseByteSize(size: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$/i.exec(size);
  if (!match) throw new Error(`not a size: ${size} (use e.g. 512kb or 5mb)`);
  const unit = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }[(match[2] ?? "b").toLowerCase() as "b"];
  return Math.floor(Number(match[1]) * unit);
}

/**
 * The request's bytes as `req.body`, as they were signed. Meta posts uncompressed JSON: read straight
 * from the socket (a third of the cost of body-parser's generic reader under load); a compressed body
 * goes through `express.raw`, which inflates it. Over the limit → 413, a broken stream → 400.
 */
function rawBody(limit: string): RequestHandler {
  const maxBytes = parseByteSize(limit);
  const inflating = express.raw({ type: () => true, limit });
  return (req, res, next) => {
    const encoding = req.headers["content-encoding"];
    if (encoding && encoding.toLowerCase() !== "identity") return inflating(req, res, next);
    const declared = Number(req.headers["content-length"]);
    if (declared > maxBytes) {
      req.resume();
      return next(Object.assign(new Error("request entity too large"), { status: 413 }));
    }
    const chunks: Buffer[] = [];
    let received = 0;
    let done = false;
    const finish = (error?: Error & { status?: number }) => {
      if (done) return;
      done = true;
      if (error) {
        req.resume();
        return next(error);
      }
      req.body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, received);
      next();
    };
    req.on("data", (chunk: Buffer) => {
      if (done) return;
      received += chunk.length;
      if (received > maxBytes)
        return finish(Object.assign(new Error("request entity too large"), { status: 413 }));
      chunks.push(chunk);
    });
    req.on("end", () => finish());
    req.on("aborted", () => finish(Object.assign(new Error("request aborted"), { status: 400 })));
    req.on("error", (error) => finish(Object.assign(error, { status: 400 })));
  };
}

/** Content hash of an entry: Meta's retry of the same delivery gets the same `Nats-Msg-Id`. */
const contentId = (data: Buffer) => hash("sha256", data, "base64url");

/**
 * The callback Meta calls for every page: the verification handshake (GET) and signed event
 * deliveries (POST). A delivery is answered 200 only once JetStream stored every entry in it.
 */
export function mountWebhookRoutes(router: Express, options: WebhookOptions): void {
  const { verifyToken, bus, metrics, log } = options;
  const appSecret = [options.appSecret, ...(options.instagramAppSecret ? [options.instagramAppSecret] : [])];
  const { subjects } = bus.topology;
  const together = publishTogether();
  const forPage = pageMetrics(metrics);
  const accepted = metrics.webhooks.labels("accepted");
  const warnSignature = throttledWarning(log, "webhook signature rejected");
  const publishEntry = createEntryPublisher({
    bus,
    log,
    metrics,
    publishTimeoutMs: options.publishTimeoutMs,
    replicas: options.replicas,
  });

  router.get("/webhooks/facebook", (req: Request, res: Response) => {
    const query = req.query as Record<string, string | undefined>;
    const mode = query["hub.mode"];
    const token = query["hub.verify_token"];
    const challenge = query["hub.challenge"];
    if (
      mode === "subscribe" &&
      typeof token === "string" &&
      safeEqual(token, verifyToken) &&
      typeof challenge === "string"
    ) {
      res.type("text/plain").send(challenge);
      return;
    }
    log.warn({ mode }, "webhook verification refused");
    res.status(403).type("text/plain").send("verification failed");
  });

  router.post("/webhooks/facebook", rawBody(options.bodyLimit), async (req: Request, res: Response) => {
    const started = performance.now();
    const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    const problem = signatureProblem(raw, req.get("x-hub-signature-256"), appSecret);
    if (problem) {
      metrics.webhooks.inc({ outcome: "bad_signature" });
      metrics.signatureRejections.inc({ reason: problem });
      warnSignature(problem, { reason: problem, hint: SIGNATURE_HINTS[problem], bytes: raw.length });
      res.status(401).json({ error: "invalid X-Hub-Signature-256" });
      return;
    }
    const traceId = randomUUID();
    const receivedAt = Date.now();
    let parsed: unknown;
    try {
      parsed = JSON.parse(quoteLongIds(raw.toString("utf8")));
    } catch {
      metrics.webhooks.inc({ outcome: "malformed" });
      res.status(400).json({ error: "body is not JSON" });
      return;
    }
    const envelope = WebhookEnvelope.safeParse(parsed);
    try {
      if (!envelope.success) {
        // Meta signed it, so it is Meta's: keep it whole for inspection, and say 200.
        const reason = `invalid webhook body: ${describeIssues(envelope.error.issues)}`;
        await publishEntry({
          subject: subjects.unrouted(INVALID_BODIES),
          data: raw,
          msgId: contentId(raw),
          headers: {
            [Headers.traceId]: traceId,
            [Headers.receivedAt]: receivedAt,
            [Headers.reason]: reason,
          },
          pageId: INVALID_BODIES,
        });
        metrics.webhooks.inc({ outcome: "invalid_schema" });
        log.warn({ traceId, reason }, "signed webhook body kept as unrouted");
        res.status(200).json({ status: "kept", traceId });
        return;
      }
      const object = envelope.data.object;
      const platform = platformOfObject(object);
      if (!platform) {
        // A user, permissions or application change names no conversation: answered, counted, not kept.
        const label = appObjectLabel(object);
        metrics.appObjects.inc({ object: label });
        metrics.webhooks.inc({ outcome: "app_object" });
        log.info(
          { traceId, object: label, entries: envelope.data.entry.length },
          "app-level webhook object ignored",
        );
        res.status(200).json({ status: "ignored", object: object.slice(0, 64), traceId });
        return;
      }
      // Each entry is checked on its own: one that names no page is kept alone, the others are routed.
      const entries = (parsed as { entry: unknown[] }).entry.map((entry, index) => {
        const data = Buffer.from(JSON.stringify(entry));
        const address = WebhookEntryAddress.safeParse(entry);
        if (address.success) return { pageId: address.data.id, data, reason: undefined };
        return { pageId: undefined, data, reason: describeIssues(address.error.issues, ["entry", index]) };
      });
      const headers = {
        [Headers.traceId]: traceId,
        [Headers.receivedAt]: receivedAt,
        [Headers.object]: object,
        [Headers.platform]: platform,
      };
      const acks = await together(() =>
        Promise.all(
          entries.map(({ pageId, data, reason }) =>
            pageId !== undefined
              ? publishEntry({
                  subject: subjects.webhookEntry(pageId),
                  data,
                  msgId: contentId(data),
                  headers,
                  pageId,
                })
              : publishEntry({
                  subject: subjects.unrouted(ENTRY_WITHOUT_PAGE),
                  data,
                  msgId: contentId(data),
                  headers: {
                    ...headers,
                    ...unroutedHeaders({
                      pageId: ENTRY_WITHOUT_PAGE,
                      reason: `undecodable: ${reason}`,
                      originalSubject: subjects.webhookEntry(ENTRY_WITHOUT_PAGE),
                    }),
                  },
                  pageId: ENTRY_WITHOUT_PAGE,
                }),
          ),
        ),
      );
      const now = receivedAt / 1000;
      let stored = 0;
      acks.forEach((ack, index) => {
        const { pageId, reason } = entries[index]!;
        if (pageId === undefined) {
          metrics.invalidEntries.inc();
          log.warn({ traceId, reason, seq: ack.seq }, "webhook entry without a page kept as unrouted");
          return;
        }
        stored++;
        const page = forPage(pageId);
        page.entries.inc();
        page.lastReceived.set(now);
        if (ack.duplicate) page.duplicates.inc();
      });
      accepted.inc();
      metrics.publishSeconds.observe((performance.now() - started) / 1000);
      res.status(200).json({ status: "stored", entries: stored, kept: acks.length - stored, traceId });
    } catch (error) {
      metrics.webhooks.inc({ outcome: "broker_unavailable" });
      log.error({ traceId, err: error }, "could not store webhook; answering 503 so Meta retries");
      res.status(503).json({ error: "could not store the webhook, retry later", traceId });
    }
  });

  const bodyErrors: ErrorRequestHandler = (error, _req, res, next) => {
    const status = (error as { status?: number; type?: string }).status;
    if (status === 413) {
      metrics.webhooks.inc({ outcome: "too_large" });
      res.status(413).json({ error: `body exceeds ${options.bodyLimit}` });
      return;
    }
    if (status === 400) {
      metrics.webhooks.inc({ outcome: "malformed" });
      res.status(400).json({ error: "unreadable body" });
      return;
    }
    next(error);
  };
  router.use(bodyErrors);
}
