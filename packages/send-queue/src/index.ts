export {
  checkContentForPlatform,
  IdempotencyKeyReusedError,
  type OutgoingPayload,
  PageUnavailableError,
  type QueuedSend,
  type QueueSendDeps,
  type QueueSendInput,
  queueSend,
  UnsupportedOnPlatformError,
} from "./queue-send";
