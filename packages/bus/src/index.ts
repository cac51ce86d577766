export type { JsMsg } from "@nats-io/jetstream";
export { type Bus, type BusOptions, connectBus } from "./connection";
export {
  type ConsumerOptions,
  deadLetter,
  ensureConsumer,
  type Outcome,
  type RunningConsumer,
  runConsumer,
  transientBackoffMs,
} from "./consumer";
export { PermanentError, RetryLaterError } from "./errors";
export { header, headersToObject, type PublishOptions, publishJson, publishRaw, toHeaders } from "./publish";
export { listStored, replayStored, type StoredMessage } from "./stored";
export { deleteStreams, ensureStreams, isNotFound, type StreamOptions } from "./streams";
