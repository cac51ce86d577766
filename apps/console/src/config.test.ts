import { ConfigError, loadConfig } from "@switchboard/config";
import { describe, expect, it } from "vitest";
import { consoleConfigSchema } from "./config";

const required = {
  OPERATOR_TOKEN: "operator-token-for-tests-0123456789",
  TOKEN_ENCRYPTION_KEYS: "k1:c2VjcmV0LWtleS1mb3ItdGVzdHM=",
  FB_APP_ID: "100000000000001",
  FB_APP_SECRET: "console-test-secret",
};
const load = (extra: Record<string, string>) => loadConfig(consoleConfigSchema, { ...required, ...extra });
const problemsOf = (extra: Record<string, string>) => {
  try {
    load(extra);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems.join("\n");
    throw error;
  }
  return "";
};

describe("console configuration", () => {
  it("ends sessions after 12 hours unless CONSOLE_SESSION_TTL says otherwise, within a minute to a week", () => {
    expect(load({}).CONSOLE_SESSION_TTL).toBe(12 * 3_600_000);
    expect(load({ CONSOLE_SESSION_TTL: "30m" }).CONSOLE_SESSION_TTL).toBe(30 * 60_000);
    expect(problemsOf({ CONSOLE_SESSION_TTL: "forever" })).toContain("CONSOLE_SESSION_TTL is invalid");
    expect(problemsOf({ CONSOLE_SESSION_TTL: "10s" })).toContain("at least 1m");
    expect(problemsOf({ CONSOLE_SESSION_TTL: "200h" })).toContain("at most a week");
  });

  it("trusts no proxy by default; CONSOLE_TRUST_PROXY takes a hop count or the proxies' addresses, never `true`", () => {
    expect(load({}).CONSOLE_TRUST_PROXY).toBe(false);
    expect(load({ CONSOLE_TRUST_PROXY: "" }).CONSOLE_TRUST_PROXY).toBe(false);
    expect(load({ CONSOLE_TRUST_PROXY: "false" }).CONSOLE_TRUST_PROXY).toBe(false);
    expect(load({ CONSOLE_TRUST_PROXY: "1" }).CONSOLE_TRUST_PROXY).toBe(1);
    expect(load({ CONSOLE_TRUST_PROXY: "loopback, 10.0.0.0/8,fd00::/8" }).CONSOLE_TRUST_PROXY).toEqual([
      "loopback",
      "10.0.0.0/8",
      "fd00::/8",
    ]);
    expect(problemsOf({ CONSOLE_TRUST_PROXY: "true" })).toContain(
      "CONSOLE_TRUST_PROXY is invalid: true trusts any",
    );
    expect(problemsOf({ CONSOLE_TRUST_PROXY: "10.0.0.0/33" })).toContain("CONSOLE_TRUST_PROXY is invalid");
    expect(problemsOf({ CONSOLE_TRUST_PROXY: "the-proxy" })).toContain("CONSOLE_TRUST_PROXY is invalid");
  });
});
