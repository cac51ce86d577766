import { OpenAPIRegistry, OpenApiGeneratorV31 } from "@asteasolutions/zod-to-openapi";
import {
  ApiError,
  ConversationList,
  MessageList,
  MessagesQuery,
  PageList,
  PaginationQuery,
  SendMessageAccepted,
  SendMessageRequest,
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

  return new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: "3.1.0",
    info: {
      title: "Switchboard Conversations API",
      version: "1",
      description: "Read a company's Messenger conversations and reply through the right page, exactly once.",
    },
  });
}
