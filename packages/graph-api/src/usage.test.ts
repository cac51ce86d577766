import { describe, expect, it } from "vitest";
import { classifyGraphError } from "./errors";
import { parseUsage } from "./usage";

describe("parseUsage", () => {
  it("reads Meta's three usage headers and the highest percentage", () => {
    const usage = parseUsage(
      new Headers({
        "x-app-usage": '{"call_count":28,"total_time":25,"total_cputime":25}',
        "x-page-usage": '{"call_count":12,"total_time":64,"total_cputime":3}',
        "x-business-use-case-usage":
          '{"112233":[{"type":"pages","call_count":71,"total_cputime":10,"total_time":9,"estimated_time_to_regain_access":0}],' +
          '"445566":[{"type":"messenger","call_count":100,"total_cputime":20,"total_time":20,"estimated_time_to_regain_access":7}]}',
      }),
    );
    expect(usage.appUsage).toEqual({ call_count: 28, total_time: 25, total_cputime: 25 });
    expect(usage.pageUsage).toEqual({ call_count: 12, total_time: 64, total_cputime: 3 });
    expect(usage.maxPercent).toBe(100);
    expect(usage.estimatedTimeToRegainAccessMinutes).toBe(7);
  });

  it("ignores missing and malformed headers", () => {
    expect(parseUsage(new Headers({ "x-app-usage": "not json" }))).toEqual({});
    expect(parseUsage(new Headers())).toEqual({});
  });
});

describe("classifyGraphError", () => {
  it.each([
    [{ status: 400, code: 190, subcode: 460 }, "invalid_token"],
    [{ status: 400, code: 102 }, "invalid_token"],
    [{ status: 403, code: 10 }, "permission"],
    [{ status: 403, code: 299 }, "permission"],
    [{ status: 400, code: 3 }, "permission"],
    [{ status: 400, code: 4 }, "rate_limit"],
    [{ status: 400, code: 80001 }, "rate_limit"],
    [{ status: 400, code: 80014 }, "rate_limit"],
    [{ status: 400, code: 341 }, "rate_limit"],
    [{ status: 429 }, "rate_limit"],
    [{ status: 500, code: 1 }, "transient"],
    [{ status: 500, code: 1200 }, "transient"],
    [{ status: 502 }, "transient"],
    [{ status: 400, code: 999, isTransient: true }, "transient"],
    [{ status: 400, code: 551, subcode: 1545041 }, "user_unavailable"],
    [{ status: 400, code: 100, subcode: 2018001 }, "user_unavailable"],
    [{ status: 400, code: 10, subcode: 2018278 }, "outside_window"],
    [{ status: 400, code: 10, subcode: 2018108 }, "outside_window"],
    [{ status: 400, code: 100, subcode: 33 }, "bad_request"],
    [{ status: 400, code: 368 }, "unknown"],
    [{ status: 404 }, "unknown"],
  ] as const)("%o → %s", (facts, kind) => {
    expect(classifyGraphError(facts)).toBe(kind);
  });
});
