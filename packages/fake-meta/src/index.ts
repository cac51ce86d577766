export {
  createFakeMeta,
  type FakeMeta,
  type FakeMetaOptions,
  type RunningFakeMeta,
  type SendWebhookOptions,
} from "./app";
export { type FakeMetaControl, fakeMetaControl } from "./control-client";
export { defaultErrorFor, parseFields, proofIsValid, SUBSCRIBABLE_FIELDS } from "./graph";
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
