export {
  createFakeMeta,
  type FakeMeta,
  type FakeMetaOptions,
  type RunningFakeMeta,
  type SendWebhookOptions,
} from "./app";
export { type FakeMetaControl, fakeMetaControl } from "./control-client";
export { createGraphRouter, type GraphRouterOptions, SUBSCRIBABLE_FIELDS } from "./graph";
export {
  type ConversationShape,
  defaultErrorFor,
  type MetaError,
  type OnMessageSent,
  parseFields,
  proofIsValid,
  type SentInput,
} from "./graph-shared";
export {
  createInstagramRouter,
  INSTAGRAM_API_PATH,
  INSTAGRAM_SUBSCRIBABLE_FIELDS,
  INSTAGRAM_TOKEN_LIFETIME_SECONDS,
  type InstagramRouterOptions,
} from "./instagram";
export * from "./state";
export {
  loadStateFile,
  persistState,
  StateFileError,
  type StatePersistence,
  saveStateFile,
} from "./state-file";
export {
  type DeliveryResult,
  deliverSignedWebhook,
  metaJson,
  RawNumber,
  type WebhookEntryInput,
  webhookBodyFor,
} from "./webhooks";
