import type { JsMsg } from "@nats-io/jetstream";
import type { z } from "zod";
import { PermanentError } from "./errors";

/**
 * Every consumer's way to read a message: bytes that are not JSON, or JSON its schema refuses, fail on
 * their own and will never succeed on a retry, so they become a dead letter at once (with the reason).
 */
export function decodeMessage<S extends z.ZodType>(msg: JsMsg, schema: S, what = "message"): z.infer<S> {
  let value: unknown;
  try {
    value = msg.json();
  } catch (error) {
    throw new PermanentError(`undecodable ${what}: not JSON (${(error as Error).message})`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .slice(0, 5)
      .map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`)
      .join("; ");
    throw new PermanentError(`invalid ${what}: ${issues}`);
  }
  return parsed.data;
}
