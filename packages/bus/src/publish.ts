import type { JetStreamClient, JsMsg, PubAck } from "@nats-io/jetstream";
import { type MsgHdrs, headers as natsHeaders } from "@nats-io/transport-node";
import { Headers } from "@switchboard/contracts";

export interface PublishOptions {
  /** Becomes `Nats-Msg-Id`: the stream drops a repeat within its duplicate window. */
  msgId?: string;
  headers?: Record<string, string | number | undefined>;
  timeoutMs?: number;
}

export function toHeaders(values: Record<string, string | number | undefined> = {}): MsgHdrs {
  const h = natsHeaders();
  for (const [name, value] of Object.entries(values)) if (value !== undefined) h.set(name, String(value));
  return h;
}

const encoder = new TextEncoder();

/** Publishes bytes (or a string) and resolves with JetStream's ack: stored, or a duplicate. */
export function publishRaw(
  js: JetStreamClient,
  subject: string,
  data: Uint8Array | string,
  options: PublishOptions = {},
): Promise<PubAck> {
  return js.publish(subject, typeof data === "string" ? encoder.encode(data) : data, {
    ...(options.msgId ? { msgID: options.msgId } : {}),
    ...(options.headers ? { headers: toHeaders(options.headers) } : {}),
    ...(options.timeoutMs ? { timeout: options.timeoutMs } : {}),
  });
}

export function publishJson(
  js: JetStreamClient,
  subject: string,
  value: unknown,
  options: PublishOptions = {},
) {
  return publishRaw(js, subject, JSON.stringify(value), options);
}

/** Reads a header from a message's headers, or undefined. */
export function header(h: MsgHdrs | undefined, name: string): string | undefined {
  const value = h?.get(name);
  return value ? value : undefined;
}

/**
 * When the ingress received the webhook a message stems from (ms, its `Sb-Received-At` header), or, for a
 * message published without it, when JetStream stored it.
 */
export function receivedAtOf(msg: Pick<JsMsg, "headers" | "info">): number {
  return Number(header(msg.headers, Headers.receivedAt)) || msg.info.timestampNanos / 1e6;
}

export function headersToObject(h: MsgHdrs | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!h) return out;
  for (const [name, values] of h) out[name] = values[0] ?? "";
  return out;
}
