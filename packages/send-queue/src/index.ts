export {
  IdempotencyKeyReusedError,
  type OutgoingPayload,
  PageUnavailableError,
  type QueuedSend,
  type QueueSendDeps,
  type QueueSendInput,
  queueSend,
} from "./queue-send";
