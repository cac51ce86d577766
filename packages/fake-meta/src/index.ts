export {
  createFakeMeta,
  type FakeMeta,
  type FakeMetaOptions,
  type RunningFakeMeta,
  type SendWebhookOptions,
} from "./app";
export { defaultErrorFor, proofIsValid, SUBSCRIBABLE_FIELDS } from "./graph";
export * from "./state";
export {
  type DeliveryResult,
  deliverSignedWebhook,
  metaJson,
  RawNumber,
  type WebhookEntryInput,
  webhookBodyFor,
} from "./webhooks";
