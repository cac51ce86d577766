import { randomBytes } from "node:crypto";
import pg from "pg";
import { inject } from "vitest";

declare module "vitest" {
  export interface ProvidedContext {
    services: { databaseUrl: string; redisUrl: string; natsUrl: string; source: "local" | "testcontainers" };
  }
}

/** URLs of the real services this test run uses (see @switchboard/vitest-config's global setup). */
export function testServices() {
  return inject("services");
}

/** A short random id: each test file gets its own bus namespace, key prefix and database. */
export function uniqueId(prefix = "t"): string {
  return `${prefix}${randomBytes(5).toString("hex")}`;
}

export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

/** Creates an empty database on the test Postgres, migrates it with `migrate`, and drops it after. */
export async function createTestDatabase(migrate?: (url: string) => Promise<unknown>): Promise<TestDatabase> {
  const admin = new URL(testServices().databaseUrl);
  const name = `sb_test_${uniqueId("")}`;
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  await client.query(`CREATE DATABASE ${name}`);
  await client.end();
  const url = new URL(admin.toString());
  url.pathname = `/${name}`;
  if (migrate) await migrate(url.toString());
  return {
    url: url.toString(),
    name,
    async drop() {
      const c = new pg.Client({ connectionString: admin.toString() });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** Polls `probe` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function eventually<T>(
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  { timeoutMs = 15_000, intervalMs = 50, message = "condition" } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value as T;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out waiting for ${message}${last ? `: ${(last as Error).message}` : ""}`);
}
