import { createIsolatedDatabase, type IsolatedDatabase } from "@switchboard/local-system";
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

export { deleteRedisKeys, eventually, freePort, uniqueId } from "@switchboard/local-system";

export type TestDatabase = IsolatedDatabase;

/** Creates an empty database on the test Postgres, migrates it with `migrate`, and drops it after. */
export function createTestDatabase(migrate?: (url: string) => Promise<unknown>): Promise<TestDatabase> {
  return createIsolatedDatabase(testServices().databaseUrl, { prefix: "sb_test_", migrate });
}
