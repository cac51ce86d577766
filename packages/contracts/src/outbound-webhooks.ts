import { z } from "zod";
import { DomainEvent, PageLifecycleEvent } from "./events";

/**
 * Outbound webhooks: what a company registers (`/v1/webhook-endpoints`) and what Switchboard POSTs to
 * it. Deliveries follow Standard Webhooks (https://www.standardwebhooks.com): `webhook-id`,
 * `webhook-timestamp`, `webhook-signature` headers and a `{ type, timestamp, data }` body whose `data`
 * is the event exactly as the domain stream (or the pages stream) carries it.
 */

/**
 * An outbound webhook endpoint that kept failing was switched off (published by the webhook-dispatcher on
 * the domain stream, subject `domainEvent(type, companyId)`); the company's other endpoints hear it.
 */
export const WebhookEndpointDisabledEvent = z.object({
  type: z.literal("webhook_endpoint.disabled"),
  endpointId: z.string(),
  companyId: z.string(),
  url: z.string(),
  reason: z.string(),
  failingSince: z.number().int(),
  occurredAt: z.number().int(),
});
export type WebhookEndpointDisabledEvent = z.infer<typeof WebhookEndpointDisabledEvent>;

/** Once per failing streak (`Nats-Msg-Id`): re-enabled and failing again is a new fact. */
export function endpointDisabledEventId(event: WebhookEndpointDisabledEvent): string {
  return `${event.type}:${event.endpointId}:${event.failingSince}`;
}

/** Everything on the domain stream. */
export const DomainStreamEvent = z.union([DomainEvent, WebhookEndpointDisabledEvent]);
export type DomainStreamEvent = z.infer<typeof DomainStreamEvent>;

/** Page lifecycle events a product hears about (the rest stay internal). */
export const DELIVERED_PAGE_EVENTS = ["page.status_changed", "page.subscription_changed"] as const;

/** Every event type an endpoint can ask for. */
export const WebhookEventType = z
  .enum([
    "conversation.created",
    "conversation.thread_owner_changed",
    "message.created",
    "message.edited",
    "message.deleted",
    "message.status_changed",
    "message.sent",
    "message.failed",
    "webhook_endpoint.disabled",
    ...DELIVERED_PAGE_EVENTS,
  ])
  .meta({ id: "WebhookEventType" });
export type WebhookEventType = z.infer<typeof WebhookEventType>;
export const WEBHOOK_EVENT_TYPES = WebhookEventType.options as readonly string[];

/** The body of a delivery. */
export const WebhookDeliveryBody = z
  .object({
    type: WebhookEventType,
    timestamp: z.iso.datetime().meta({ description: "When the event happened (ISO 8601)." }),
    data: z.union([DomainEvent, WebhookEndpointDisabledEvent, PageLifecycleEvent]),
  })
  .meta({ id: "WebhookDeliveryBody" });
export type WebhookDeliveryBody = z.infer<typeof WebhookDeliveryBody>;

const EventsField = z
  .array(WebhookEventType)
  .min(1)
  .refine((events) => new Set(events).size === events.length, "events are listed once each")
  .meta({ description: "The event types delivered; omitted or null: all of them." });

export const CreateWebhookEndpointRequest = z
  .object({
    url: z.string().min(1).max(2000).meta({ description: "https:// URL that receives the deliveries" }),
    events: EventsField.optional(),
    description: z.string().max(500).optional(),
  })
  .strict()
  .meta({ id: "CreateWebhookEndpoint" });
export type CreateWebhookEndpointRequest = z.infer<typeof CreateWebhookEndpointRequest>;

export const UpdateWebhookEndpointRequest = z
  .object({
    url: z.string().min(1).max(2000).optional(),
    events: EventsField.nullable().optional(),
    description: z.string().max(500).nullable().optional(),
    enabled: z.boolean().optional(),
  })
  .strict()
  .refine((body) => Object.keys(body).length > 0, "nothing to change")
  .meta({ id: "UpdateWebhookEndpoint" });
export type UpdateWebhookEndpointRequest = z.infer<typeof UpdateWebhookEndpointRequest>;

export const WebhookEndpointHealth = z
  .object({
    pending: z.number().int().meta({ description: "Deliveries not delivered yet" }),
    oldestPendingAt: z.iso.datetime().nullable(),
    failingSince: z.iso.datetime().nullable(),
    consecutiveFailures: z.number().int(),
    lastDeliveredAt: z.iso.datetime().nullable(),
  })
  .meta({ id: "WebhookEndpointHealth" });

export const WebhookEndpointView = z
  .object({
    id: z.string(),
    url: z.string(),
    events: z.array(WebhookEventType).nullable().meta({ description: "null: every event type" }),
    description: z.string().nullable(),
    enabled: z.boolean(),
    disabledReason: z.string().nullable(),
    createdAt: z.iso.datetime(),
    health: WebhookEndpointHealth,
  })
  .meta({ id: "WebhookEndpoint" });
export type WebhookEndpointView = z.infer<typeof WebhookEndpointView>;

export const WebhookEndpointWithSecret = WebhookEndpointView.extend({
  secret: z.string().meta({ description: "`whsec_…`: shown once; verify deliveries with it" }),
}).meta({ id: "WebhookEndpointWithSecret" });

export const WebhookEndpointList = z
  .object({ data: z.array(WebhookEndpointView) })
  .meta({ id: "WebhookEndpointList" });

export const WebhookDeliveryStatus = z.enum(["pending", "delivered", "failed"]);

export const WebhookAttemptView = z
  .object({
    attemptedAt: z.iso.datetime(),
    statusCode: z.number().int().nullable(),
    durationMs: z.number().int(),
    error: z.string().nullable(),
    nextAttemptAt: z.iso.datetime().nullable(),
  })
  .meta({ id: "WebhookAttempt" });

export const WebhookDeliveryView = z
  .object({
    id: z.string(),
    webhookId: z.string().meta({ description: "The `webhook-id` header: the same on every retry" }),
    type: WebhookEventType,
    status: WebhookDeliveryStatus,
    createdAt: z.iso.datetime(),
    nextAttemptAt: z.iso.datetime().nullable(),
    deliveredAt: z.iso.datetime().nullable(),
    attempts: z.array(WebhookAttemptView),
  })
  .meta({ id: "WebhookDelivery" });
export type WebhookDeliveryView = z.infer<typeof WebhookDeliveryView>;

export const WebhookDeliveryList = z
  .object({ data: z.array(WebhookDeliveryView), nextCursor: z.string().nullable() })
  .meta({ id: "WebhookDeliveryList" });

export const WebhookDeliveriesQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  status: WebhookDeliveryStatus.optional(),
  cursor: z.string().optional().meta({ description: "nextCursor of the previous page" }),
});

// Every domain event type is deliverable: adding one to the domain stream without listing it fails here.
type MissingDomainType = Exclude<DomainStreamEvent["type"], WebhookEventType>;
const everyDomainTypeListed: MissingDomainType extends never ? true : never = true;
void everyDomainTypeListed;
