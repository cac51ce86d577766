import { randomUUID } from "node:crypto";
import type { Bus } from "@switchboard/bus";
import { MessagesQuery, PaginationQuery, SendMessageRequest } from "@switchboard/contracts";
import {
  findConversationId,
  InvalidCursorError,
  listCompanyPages,
  listConversations,
  listMessages,
} from "@switchboard/conversations";
import type { Db } from "@switchboard/db";
import { Counter, type Registry } from "@switchboard/observability";
import {
  IdempotencyKeyReusedError,
  PageUnavailableError,
  queueSend,
  UnsupportedOnPlatformError,
} from "@switchboard/send-queue";
import express, { type NextFunction, type Request, type Response, type Router } from "express";
import type { Logger } from "pino";
import { callerOf, requireApiKey } from "./auth";
import { sendError, sendInvalid } from "./errors";
import { buildOpenApiDocument } from "./openapi";
import { mountWebhookEndpointRoutes, type WebhookEndpointsApiDeps } from "./webhook-endpoints";

export interface ConversationsApiDeps {
  db: Db;
  bus: Bus;
  log: Logger;
  metrics?: Registry;
  /** Outbound webhook endpoints: secrets are encrypted with the token keys; targets checked by the policy. */
  webhooks: Omit<WebhookEndpointsApiDeps, "db">;
}

const IdempotencyKey = /^[\x21-\x7e]{1,255}$/;

/**
 * The product-facing Conversations API under `/v1`. Every route but the OpenAPI document needs an API key,
 * and a page of another company is answered exactly like a page that does not exist (404), so page ids
 * do not leak across tenants.
 */
export function createConversationsApi({ db, bus, log, metrics, webhooks }: ConversationsApiDeps): Router {
  const router = express.Router();
  const openApiDocument = buildOpenApiDocument();
  const requests = metrics
    ? new Counter({
        name: "switchboard_api_requests_total",
        help: "Conversations API requests by route and HTTP status",
        labelNames: ["method", "route", "status"],
        registers: [metrics],
      })
    : undefined;

  router.use("/v1", (req, res, next) => {
    res.on("finish", () => {
      const route = req.route?.path ? `/v1${req.route.path}` : "unmatched";
      requests?.inc({ method: req.method, route, status: String(res.statusCode) });
    });
    next();
  });
  router.get("/v1/openapi.json", (_req, res) => {
    res.json(openApiDocument);
  });
  router.use("/v1", express.json({ limit: "64kb" }), requireApiKey(db, log));

  /** Resolves `:pageId` within the caller's company, or answers 404. */
  router.param("pageId", async (_req: Request, res: Response, next: NextFunction, pageId: string) => {
    try {
      const page = await db.pageConnection.findUnique({ where: { pageId }, select: { companyId: true } });
      if (!page || page.companyId !== callerOf(res).companyId) {
        sendError(res, 404, "not_found", "page not found");
        return;
      }
      next();
    } catch (error) {
      next(error);
    }
  });

  router.get("/v1/pages", async (_req, res) => {
    res.json({ data: await listCompanyPages(db, callerOf(res).companyId) });
  });

  router.get("/v1/pages/:pageId/conversations", async (req, res) => {
    const query = PaginationQuery.safeParse(req.query);
    if (!query.success) return sendInvalid(res, query.error, "query");
    res.json(await listConversations(db, req.params.pageId, query.data));
  });

  router.get("/v1/pages/:pageId/conversations/:psid/messages", async (req, res) => {
    const query = MessagesQuery.safeParse(req.query);
    if (!query.success) return sendInvalid(res, query.error, "query");
    const conversationId = await findConversationId(db, req.params.pageId, req.params.psid);
    if (!conversationId) return sendError(res, 404, "not_found", "conversation not found");
    res.json(await listMessages(db, conversationId, query.data));
  });

  router.post("/v1/pages/:pageId/conversations/:psid/messages", async (req, res) => {
    const body = SendMessageRequest.safeParse(req.body);
    if (!body.success) return sendInvalid(res, body.error, "message");
    const idempotencyKey = req.get("idempotency-key");
    if (idempotencyKey !== undefined && !IdempotencyKey.test(idempotencyKey)) {
      return sendError(
        res,
        400,
        "invalid_request",
        "Idempotency-Key must be 1 to 255 visible ASCII characters",
      );
    }
    const { pageId, psid } = req.params;
    try {
      const queued = await queueSend(
        { db, bus },
        {
          pageId,
          psid,
          content: body.data,
          ...(idempotencyKey ? { idempotencyKey } : {}),
          origin: "api",
          traceId: req.get("x-request-id") ?? randomUUID(),
        },
      );
      log.info({ pageId, psid, messageId: queued.id, replayed: queued.replayed }, "send queued");
      if (queued.replayed) res.set("Idempotent-Replayed", "true");
      res.status(202).json({ id: queued.id, status: queued.status });
    } catch (error) {
      if (error instanceof PageUnavailableError)
        return sendError(res, 409, "page_unavailable", error.message);
      if (error instanceof IdempotencyKeyReusedError)
        return sendError(res, 422, "idempotency_key_reused", error.message);
      if (error instanceof UnsupportedOnPlatformError)
        return sendError(res, 400, "invalid_request", error.message, [
          { path: error.field, message: error.message },
        ]);
      throw error;
    }
  });

  mountWebhookEndpointRoutes(router, { db, ...webhooks });

  router.use("/v1", (_req, res) => {
    sendError(res, 404, "not_found", "no such route");
  });

  router.use("/v1", (error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const type = (error as { type?: string })?.type;
    if (type === "entity.parse.failed")
      return sendError(res, 400, "invalid_request", "body is not valid JSON");
    if (type === "entity.too.large") return sendError(res, 413, "invalid_request", "body is too large");
    if (error instanceof InvalidCursorError) return sendError(res, 400, "invalid_request", error.message);
    log.error({ err: error }, "api request failed");
    sendError(res, 503, "unavailable", "temporarily unavailable, try again");
  });

  return router;
}
