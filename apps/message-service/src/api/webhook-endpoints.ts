import {
  CreateWebhookEndpointRequest,
  UpdateWebhookEndpointRequest,
  WebhookDeliveriesQuery,
} from "@switchboard/contracts";
import { decodeCursor, encodeCursor } from "@switchboard/conversations";
import type { TokenCipher } from "@switchboard/crypto";
import type { Db } from "@switchboard/db";
import {
  createEndpoint,
  deleteEndpoint,
  getEndpoint,
  listDeliveries,
  listEndpoints,
  retryDelivery,
  rotateEndpointSecret,
  type TargetPolicy,
  TargetRefusedError,
  updateEndpoint,
} from "@switchboard/webhooks";
import type { Router } from "express";
import { z } from "zod";
import { callerOf } from "./auth";
import { sendError, sendInvalid } from "./errors";

export interface WebhookEndpointsApiDeps {
  db: Db;
  cipher: TokenCipher;
  policy: TargetPolicy;
}

const DeliveryCursor = z.tuple([z.iso.datetime(), z.uuid()]);

/**
 * `/v1/webhook-endpoints`: a company's outbound webhook endpoints and their delivery log. Mounted after
 * the API key check; an endpoint of another company is answered 404 like one that does not exist.
 */
export function mountWebhookEndpointRoutes(router: Router, deps: WebhookEndpointsApiDeps): void {
  const { db } = deps;
  const notFound = (res: Parameters<typeof sendError>[0]) =>
    sendError(res, 404, "not_found", "webhook endpoint not found");
  const refused = (res: Parameters<typeof sendError>[0], error: unknown) => {
    if (!(error instanceof TargetRefusedError)) throw error;
    sendError(res, 400, "invalid_request", `url refused: ${error.reason}`, [
      { path: "url", message: error.reason },
    ]);
  };

  router.post("/v1/webhook-endpoints", async (req, res) => {
    const body = CreateWebhookEndpointRequest.safeParse(req.body);
    if (!body.success) return sendInvalid(res, body.error, "webhook endpoint");
    try {
      res.status(201).json(await createEndpoint(deps, callerOf(res).companyId, body.data));
    } catch (error) {
      refused(res, error);
    }
  });

  router.get("/v1/webhook-endpoints", async (_req, res) => {
    res.json({ data: await listEndpoints(db, callerOf(res).companyId) });
  });

  router.get("/v1/webhook-endpoints/:endpointId", async (req, res) => {
    const endpoint = await getEndpoint(db, callerOf(res).companyId, req.params.endpointId);
    if (!endpoint) return notFound(res);
    res.json(endpoint);
  });

  router.patch("/v1/webhook-endpoints/:endpointId", async (req, res) => {
    const body = UpdateWebhookEndpointRequest.safeParse(req.body);
    if (!body.success) return sendInvalid(res, body.error, "webhook endpoint");
    try {
      const endpoint = await updateEndpoint(deps, callerOf(res).companyId, req.params.endpointId, body.data);
      if (!endpoint) return notFound(res);
      res.json(endpoint);
    } catch (error) {
      refused(res, error);
    }
  });

  router.delete("/v1/webhook-endpoints/:endpointId", async (req, res) => {
    if (!(await deleteEndpoint(db, callerOf(res).companyId, req.params.endpointId))) return notFound(res);
    res.status(204).end();
  });

  router.post("/v1/webhook-endpoints/:endpointId/rotate-secret", async (req, res) => {
    const rotated = await rotateEndpointSecret(deps, callerOf(res).companyId, req.params.endpointId);
    if (!rotated) return notFound(res);
    res.json(rotated);
  });

  router.get("/v1/webhook-endpoints/:endpointId/deliveries", async (req, res) => {
    const query = WebhookDeliveriesQuery.safeParse(req.query);
    if (!query.success) return sendInvalid(res, query.error, "query");
    const before = query.data.cursor ? decodeCursor(query.data.cursor, DeliveryCursor) : undefined;
    const page = await listDeliveries(db, callerOf(res).companyId, req.params.endpointId, {
      limit: query.data.limit,
      ...(query.data.status ? { status: query.data.status } : {}),
      ...(before ? { before: { createdAt: new Date(before[0]), id: before[1] } } : {}),
    });
    if (!page) return notFound(res);
    res.json({
      data: page.data,
      nextCursor: page.next ? encodeCursor([page.next.createdAt.toISOString(), page.next.id]) : null,
    });
  });

  router.post("/v1/webhook-endpoints/:endpointId/deliveries/:deliveryId/retry", async (req, res) => {
    const delivery = await retryDelivery(
      db,
      callerOf(res).companyId,
      req.params.endpointId,
      req.params.deliveryId,
    );
    if (!delivery) return sendError(res, 404, "not_found", "delivery not found");
    res.status(202).json(delivery);
  });
}
