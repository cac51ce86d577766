import { describe, expect, it } from "vitest";
import { ConversationCursor, decodeCursor, encodeCursor, InvalidCursorError, MessageCursor } from "./cursor";

describe("keyset cursors", () => {
  it("round-trips the sort key of the last row", () => {
    const key = ["2026-12-04T03:00:00.000Z", "m_1", "6f1c1a9e-1b7f-4c5e-9a55-0d7b2b8f5a10"];
    expect(decodeCursor(encodeCursor(key), MessageCursor)).toEqual(key);
  });

  it("refuses a cursor it did not issue, or one of another listing", () => {
    expect(() => decodeCursor("not-base64-json", ConversationCursor)).toThrow(InvalidCursorError);
    const messageCursor = encodeCursor([
      "2026-12-04T03:00:00.000Z",
      "m_1",
      "6f1c1a9e-1b7f-4c5e-9a55-0d7b2b8f5a10",
    ]);
    expect(() => decodeCursor(messageCursor, ConversationCursor)).toThrow(InvalidCursorError);
  });
});
