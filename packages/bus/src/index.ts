export type { JsMsg } from "@nats-io/jetstream";
export { type Batcher, type BatcherOptions, createBatcher, type Settled } from "./batch";
export { type Bus, type BusOptions, connectBus } from "./connection";
export {
  type ConsumerOptions,
  deadLetter,
  ensureConsumer,
  HandlerTimeoutError,
  type Outcome,
  type RunningConsumer,
  runConsumer,
  transientBackoffMs,
} from "./consumer";
export { decodeMessage } from "./decode";
export { PermanentError, RetryLaterError } from "./errors";
export {
  header,
  headersToObject,
  type PublishOptions,
  publishJson,
  publishRaw,
  receivedAtOf,
  toHeaders,
} from "./publish";
export { listStored, replayStored, type StoredMessage } from "./stored";
export {
  deleteStreams,
  desiredStreamConfig,
  isClusterNotReady,
  isNotFound,
  type ProvisionOptions,
  provisionStreams,
  type StreamChange,
  type StreamOptions,
  StreamsMissingError,
  verifyStreams,
  whileClusterNotReady,
} from "./streams";
