export {
  IdempotencyKeyReusedError,
  type OutgoingPayload,
  PageUnavailableError,
  type QueuedSend,
  type QueueSendDeps,
  type QueueSendInput,
  queueSend,
  SendQueueUnavailableError,
} from "./queue-send";
