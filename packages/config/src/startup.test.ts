import { createServer } from "node:net";
import { connect } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { describeStartupFailure, env, loadConfig } from "./index";

/** A port on which nothing listens (taken, then released). */
async function deadPort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

const failureOf = async (attempt: () => Promise<unknown>) => {
  try {
    await attempt();
  } catch (error) {
    return error;
  }
  throw new Error("expected the connection to fail");
};

describe("describeStartupFailure", () => {
  it("names NATS and its URL, with how to start it, for nats.js's connection refused", async () => {
    const port = await deadPort();
    const url = `nats://127.0.0.1:${port}`;
    const error = await failureOf(() => connect({ servers: [url], reconnect: false }));
    expect(describeStartupFailure(error, { NATS_URL: url })).toBe(
      `start-up failed: cannot reach NATS at ${url} (connection refused) — start it with \`docker compose -f infra/compose.yaml up -d nats\` or install nats-server`,
    );
  });

  it("names Redis for ioredis giving up on a dead server", async () => {
    const url = `redis://127.0.0.1:${await deadPort()}`;
    // As the services configure it: one retry, then the command fails.
    const redis = new Redis(url, { maxRetriesPerRequest: 1, commandTimeout: 1000 });
    redis.on("error", () => undefined);
    const error = await failureOf(() => redis.ping());
    redis.disconnect();
    const line = describeStartupFailure(error, { REDIS_URL: url });
    expect(line).toMatch(new RegExp(`^start-up failed: cannot reach Redis at ${url} \\(`));
    expect(line).toContain("up -d redis` or install redis-server");
  });

  it("names PostgreSQL by the port a refused connection was for", async () => {
    const url = `postgresql://postgres@127.0.0.1:${await deadPort()}/switchboard`;
    const client = new pg.Client({ connectionString: url });
    const error = await failureOf(() => client.connect());
    expect(describeStartupFailure(error, { DATABASE_URL: url })).toBe(
      `start-up failed: cannot reach PostgreSQL at ${url} (connection refused) — start it with \`docker compose -f infra/compose.yaml up -d postgres\` or install postgresql`,
    );
  });

  it("says a config error as it is and keeps the stack of anything else", () => {
    const configError = (() => {
      try {
        loadConfig(z.object({ FB_APP_SECRET: env.secret() }), {});
      } catch (error) {
        return error;
      }
    })();
    expect(describeStartupFailure(configError, {})).toBe(
      "start-up failed: Invalid configuration:\n  - FB_APP_SECRET is missing (required)",
    );
    const bug = new TypeError("x is not a function");
    expect(describeStartupFailure(bug, {})).toBe(`start-up failed: ${bug.stack}`);
  });
});
