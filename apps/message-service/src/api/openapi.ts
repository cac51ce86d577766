import { OpenAPIRegistry, OpenApiGeneratorV31 } from "@asteasolutions/zod-to-openapi";
import {
  ApiError,
  ConversationList,
  CreateWebhookEndpointRequest,
  MessageList,
  MessagesQuery,
  PageList,
  PaginationQuery,
  SendMessageAccepted,
  SendMessageRequest,
  UpdateWebhookEndpointRequest,
  WebhookDeliveriesQuery,
  WebhookDeliveryBody,
  WebhookDeliveryList,
  WebhookDeliveryView,
  WebhookEndpointList,
  WebhookEndpointView,
  WebhookEndpointWithSecret,
} from "@switchboard/contracts";
import { z } from "zod";

/** The OpenAPI 3.1 document of `/v1`, generated from the same zod schemas the routes validate with. */
export function buildOpenApiDocument() {
  const registry = new OpenAPIRegistry();
  const bearer = registry.registerComponent("securitySchemes", "apiKey", {
    type: "http",
    scheme: "bearer",
    description: "A company's API key (`pnpm sb api-keys create --company <id>`).",
  });
  const security = [{ [bearer.name]: [] }];
  const json = (schema: z.ZodType) => ({ "application/json": { schema } });
  const errors = {
    401: { description: "Missing, unknown or revoked API key.", content: json(ApiError) },
    404: {
      description: "No such page for this key's company (or no such conversation).",
      content: json(ApiError),
    },
  };
  const pageParams = z.object({ pageId: z.string().meta({ description: "Facebook Page id" }) });
  const conversationParams = pageParams.extend({
    psid: z.string().meta({ description: "The person's page-scoped id" }),
  });

  registry.registerPath({
    method: "get",
    path: "/v1/pages",
    summary: "The caller's pages, with status and subscription status",
    security,
    responses: { 200: { description: "Pages", content: json(PageList) }, 401: errors[401] },
  });
  registry.registerPath({
    method: "get",
    path: "/v1/pages/{pageId}/conversations",
    summary: "Conversations of a page, newest first",
    security,
    request: { params: pageParams, query: PaginationQuery },
    responses: {
      200: { description: "A page of conversations", content: json(ConversationList) },
      400: { description: "Bad query or cursor", content: json(ApiError) },
      ...errors,
    },
  });
  registry.registerPath({
    method: "get",
    path: "/v1/pages/{pageId}/conversations/{psid}/messages",
    summary: "Messages of a conversation, in Meta's timestamp order, with their status",
    security,
    request: { params: conversationParams, query: MessagesQuery },
    responses: {
      200: { description: "A page of messages", content: json(MessageList) },
      400: { description: "Bad query or cursor", content: json(ApiError) },
      ...errors,
    },
  });
  registry.registerPath({
    method: "post",
    path: "/v1/pages/{pageId}/conversations/{psid}/messages",
    summary: "Send a message through the page (queued; sent once)",
    description:
      "Answers 202 once the message is stored and queued; its status moves to `sent` (or `failed` with " +
      "`error`) when Meta answers. With an `Idempotency-Key`, a retry returns the first message and sends nothing.",
    security,
    request: {
      params: conversationParams,
      headers: z.object({
        "Idempotency-Key": z
          .string()
          .max(255)
          .optional()
          .meta({ description: "Any unique string per message; retries with the same key send once." }),
      }),
      body: { required: true, content: json(SendMessageRequest) },
    },
    responses: {
      202: { description: "Queued", content: json(SendMessageAccepted) },
      400: { description: "Invalid body", content: json(ApiError) },
      ...errors,
      409: {
        description: "The page cannot send (disabled or needs re-authorisation)",
        content: json(ApiError),
      },
      422: { description: "Idempotency-Key already used for another person", content: json(ApiError) },
      503: {
        description: "The send queue is unavailable; retry with the same Idempotency-Key",
        content: json(ApiError),
      },
    },
  });

  registerWebhookEndpointPaths(registry, security, json, errors);

  const generator = new OpenApiGeneratorV31(registry.definitions);
  const document = generator.generateDocument({
    openapi: "3.1.0",
    info: {
      title: "Switchboard Conversations API",
      version: "1",
      description: "Read a company's Messenger conversations and reply through the right page, exactly once.",
    },
  });
  // zod-to-openapi 8 gathers components before it walks `webhooks`: gather them again, with the body.
  return { ...document, components: generator.generateComponents().components };
}

/** `/v1/webhook-endpoints`: outbound webhooks (Standard Webhooks), and the body every delivery carries. */
function registerWebhookEndpointPaths(
  registry: OpenAPIRegistry,
  security: Array<Record<string, string[]>>,
  json: (schema: z.ZodType) => { "application/json": { schema: z.ZodType } },
  errors: Record<401 | 404, { description: string; content: ReturnType<typeof json> }>,
) {
  // OpenAPI 3.1's `webhooks`: what Switchboard POSTs to a registered endpoint.
  registry.registerWebhook({
    method: "post",
    path: "switchboard-event",
    summary: "A change of the company's pages, POSTed to each endpoint that takes its type",
    description:
      'Standard Webhooks: verify `webhook-signature` (`v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`, one per active secret, space-separated) with the endpoint\'s secret; `webhook-id` is stable across retries of one event. Answer 2xx within the timeout; anything else is retried.',
    request: {
      headers: z.object({
        "webhook-id": z.string().meta({ description: "Stable across retries: deduplicate on it" }),
        "webhook-timestamp": z.string().meta({ description: "Seconds since the epoch, when signed" }),
        "webhook-signature": z.string().meta({ description: "v1,<base64 signature> [v1,<…>]" }),
      }),
      body: { content: json(WebhookDeliveryBody) },
    },
    responses: { 200: { description: "Any 2xx: delivered" } },
  });
  const endpointParams = z.object({ endpointId: z.string().meta({ description: "Webhook endpoint id" }) });
  const invalid = {
    description: "Invalid body, or a URL the target policy refuses",
    content: json(ApiError),
  };
  const notFound = { ...errors[404], description: "No such endpoint for this key's company" };
  registry.registerPath({
    method: "post",
    path: "/v1/webhook-endpoints",
    summary: "Register an endpoint; every change of the company's pages is POSTed to it, signed",
    description:
      "Deliveries follow Standard Webhooks: `webhook-id` (the same on every retry), `webhook-timestamp`, " +
      "`webhook-signature: v1,<base64 HMAC-SHA256 of {id}.{timestamp}.{body}>` with the base64-decoded " +
      "part of the secret after `whsec_`. The body is a `WebhookDeliveryBody`. Only https URLs of public " +
      "addresses are accepted.",
    security,
    request: { body: { required: true, content: json(CreateWebhookEndpointRequest) } },
    responses: {
      201: { description: "Created; the secret is shown only now", content: json(WebhookEndpointWithSecret) },
      400: invalid,
      401: errors[401],
    },
  });
  registry.registerPath({
    method: "get",
    path: "/v1/webhook-endpoints",
    summary: "The company's endpoints with their health",
    security,
    responses: { 200: { description: "Endpoints", content: json(WebhookEndpointList) }, 401: errors[401] },
  });
  registry.registerPath({
    method: "get",
    path: "/v1/webhook-endpoints/{endpointId}",
    summary: "One endpoint with its health",
    security,
    request: { params: endpointParams },
    responses: {
      200: { description: "The endpoint", content: json(WebhookEndpointView) },
      401: errors[401],
      404: notFound,
    },
  });
  registry.registerPath({
    method: "patch",
    path: "/v1/webhook-endpoints/{endpointId}",
    summary: "Change url, events, description, or enable/disable (enabling resumes what waited)",
    security,
    request: {
      params: endpointParams,
      body: { required: true, content: json(UpdateWebhookEndpointRequest) },
    },
    responses: {
      200: { description: "The endpoint", content: json(WebhookEndpointView) },
      400: invalid,
      401: errors[401],
      404: notFound,
    },
  });
  registry.registerPath({
    method: "delete",
    path: "/v1/webhook-endpoints/{endpointId}",
    summary: "Remove an endpoint and its delivery log",
    security,
    request: { params: endpointParams },
    responses: { 204: { description: "Deleted" }, 401: errors[401], 404: notFound },
  });
  registry.registerPath({
    method: "post",
    path: "/v1/webhook-endpoints/{endpointId}/rotate-secret",
    summary: "A new secret; the previous one keeps signing beside it for 24 hours",
    security,
    request: { params: endpointParams },
    responses: {
      200: {
        description: "The new secret, shown only now",
        content: json(z.object({ secret: z.string(), previousSecretExpiresAt: z.iso.datetime() })),
      },
      401: errors[401],
      404: notFound,
    },
  });
  registry.registerPath({
    method: "get",
    path: "/v1/webhook-endpoints/{endpointId}/deliveries",
    summary:
      "Deliveries, newest first, each with every attempt (time, status, duration, error, next attempt)",
    security,
    request: { params: endpointParams, query: WebhookDeliveriesQuery },
    responses: {
      200: { description: "A page of deliveries", content: json(WebhookDeliveryList) },
      400: { description: "Bad query or cursor", content: json(ApiError) },
      401: errors[401],
      404: notFound,
    },
  });
  registry.registerPath({
    method: "post",
    path: "/v1/webhook-endpoints/{endpointId}/deliveries/{deliveryId}/retry",
    summary: "Attempt a delivery again now (a failed one too), with the same webhook-id",
    security,
    request: { params: endpointParams.extend({ deliveryId: z.string() }) },
    responses: {
      202: { description: "Queued again", content: json(WebhookDeliveryView) },
      401: errors[401],
      404: { ...errors[404], description: "No such delivery of this endpoint" },
    },
  });
}
