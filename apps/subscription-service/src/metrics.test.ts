import { applyMigrations, createDb, type Db } from "@switchboard/db";
import { createMetricsRegistry } from "@switchboard/observability";
import { createTestDatabase, type TestDatabase } from "@switchboard/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSubscriptionMetrics, refreshSubscriptionGauges } from "./metrics";

let database: TestDatabase;
let db: Db;

beforeAll(async () => {
  database = await createTestDatabase(applyMigrations);
  db = createDb(database.url);
  // 100,000 pages: 99,000 subscribed, 600 missing, 400 needing re-authorisation.
  await db.$executeRaw`
    INSERT INTO page_subscriptions (id, page_id, desired_fields, subscribed_fields, status, last_checked_at,
                                    consecutive_failures, updated_at)
    SELECT gen_random_uuid(), (100000000000000 + n)::text, ARRAY['messages'], ARRAY['messages'],
           (CASE WHEN n < 600 THEN 'missing' WHEN n < 1000 THEN 'reauthorization_required' ELSE 'subscribed' END)::subscription_status,
           now() - make_interval(secs => n % 3600), CASE WHEN n < 600 THEN 3 ELSE 0 END, now()
    FROM generate_series(0, 99999) AS n`;
}, 60_000);

afterAll(async () => {
  await db?.$disconnect();
  await database?.drop();
});

describe("subscription metrics at 100,000 pages", () => {
  it("stay under 1 MB: counts for every page, a series for each page in trouble and for the first pages", async () => {
    const registry = createMetricsRegistry("subscription-service");
    const metrics = createSubscriptionMetrics(registry);
    await refreshSubscriptionGauges(db, metrics);
    const text = await registry.metrics();
    expect(Buffer.byteLength(text)).toBeLessThan(1_000_000);

    expect(text).toMatch(/switchboard_page_subscriptions\{status="subscribed"[^}]*\} 99000/);
    expect(text).toMatch(/switchboard_page_subscriptions\{status="missing"[^}]*\} 600/);
    expect(text).toMatch(/switchboard_page_subscriptions\{status="reauthorization_required"[^}]*\} 400/);
    const statusOne = (status: string) =>
      text
        .split("\n")
        .filter(
          (l) =>
            l.startsWith("switchboard_page_subscription_status{") &&
            l.includes(`status="${status}"`) &&
            l.endsWith(" 1"),
        );
    // Every page in trouble can be alerted on by its id (up to 1,000 of them) …
    expect(statusOne("missing")).toHaveLength(600);
    expect(statusOne("reauthorization_required")).toHaveLength(400);
    expect(text).toMatch(
      /switchboard_page_subscription_consecutive_failures\{page_id="100000000000599"[^}]*\} 3/,
    );
    // … and healthy pages only within the limit.
    expect(statusOne("subscribed").length).toBeLessThanOrEqual(100);
    expect(text).toMatch(/switchboard_page_subscription_oldest_check_timestamp_seconds\{[^}]*\} \d+/);
  }, 60_000);
});
