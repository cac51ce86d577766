import { describe, expect, it } from "vitest";
import { sameSentText } from "./echo-text";

describe("sameSentText", () => {
  it("treats whitespace Meta trims or collapses as the same text", () => {
    expect(sameSentText("  spaced   out reply  ", "spaced out reply")).toBe(true);
    expect(sameSentText("line one\nline two", "line one line two")).toBe(true);
  });

  it("tells different words apart, and a text from none", () => {
    expect(sameSentText("see you at 5", "see you at 6")).toBe(false);
    expect(sameSentText("hello", null)).toBe(false);
    expect(sameSentText(null, "hello")).toBe(false);
    expect(sameSentText(null, undefined)).toBe(true);
    expect(sameSentText(null, "")).toBe(true);
  });
});
