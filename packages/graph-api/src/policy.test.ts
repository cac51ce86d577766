import { describe, expect, it } from "vitest";
import { classifyGraphError, createGraphError } from "./errors";
import { graphFailurePolicy } from "./policy";

const errorFor = (facts: { status: number; code?: number; subcode?: number }, usage = {}) =>
  createGraphError(classifyGraphError(facts), {
    message: "m",
    endpoint: "/me/messages",
    usage,
    ...facts,
  });

describe("graphFailurePolicy", () => {
  it("re-authorises on a dead token, backs off on a throttle, retries a passing failure, gives up on the rest", () => {
    expect(graphFailurePolicy(errorFor({ status: 400, code: 190 }))?.action).toBe("reauthorize");
    expect(graphFailurePolicy(errorFor({ status: 400, code: 613 }))).toMatchObject({
      action: "back_off",
      retryAfterMs: 30_000,
    });
    expect(graphFailurePolicy(errorFor({ status: 500 }))?.action).toBe("retry");
    expect(graphFailurePolicy(errorFor({ status: 400, code: 551 }))?.action).toBe("give_up");
    expect(graphFailurePolicy(errorFor({ status: 400, code: 10, subcode: 2018278 }))?.action).toBe("give_up");
    expect(graphFailurePolicy(errorFor({ status: 403, code: 200 }))?.action).toBe("give_up");
    expect(graphFailurePolicy(errorFor({ status: 400, code: 100 }))?.action).toBe("give_up");
  });

  it("backs off for Meta's estimate, within the caller's bound", () => {
    const throttled = errorFor({ status: 400, code: 80006 }, { estimatedTimeToRegainAccessMinutes: 2 });
    expect(graphFailurePolicy(throttled)).toMatchObject({ action: "back_off", retryAfterMs: 120_000 });
    expect(graphFailurePolicy(throttled, { maxBackoffMs: 60_000 })).toMatchObject({ retryAfterMs: 60_000 });
  });

  it("has nothing to say about errors that are not Meta's answers", () => {
    expect(graphFailurePolicy(new Error("database down"))).toBeUndefined();
  });
});
