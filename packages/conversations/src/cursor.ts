import { z } from "zod";

/**
 * Opaque keyset cursors: the sort key of the last row of a page, base64url JSON. A keyset (not an offset)
 * keeps pages stable while rows are inserted: the next page starts strictly after the last row seen.
 */
export class InvalidCursorError extends Error {
  constructor() {
    super("cursor is not one this API issued");
    this.name = "InvalidCursorError";
  }
}

export function encodeCursor(key: unknown[]): string {
  return Buffer.from(JSON.stringify(key), "utf8").toString("base64url");
}

export function decodeCursor<T extends z.ZodType>(cursor: string, schema: T): z.infer<T> {
  try {
    return schema.parse(JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")));
  } catch {
    throw new InvalidCursorError();
  }
}

/** Conversations, newest first: (last_message_at, id); a conversation with no message yet sorts last. */
export const ConversationCursor = z.tuple([z.iso.datetime().nullable(), z.uuid()]);

/** Messages in Meta's order: (sent_at, mid, id); a queued send has no mid yet and sorts as "". */
export const MessageCursor = z.tuple([z.iso.datetime(), z.string(), z.uuid()]);
