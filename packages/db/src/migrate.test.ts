import { readFileSync } from "node:fs";
import { createTestDatabase, type TestDatabase } from "@switchboard/testing";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { schemaDiffSql } from "../scripts/schema-diff.mjs";
import { applyMigrations, createDb, isUniqueViolation, MigrationChecksumError } from "./index";

/** Everything about a schema that the Prisma client relies on, in a comparable form. */
async function describeSchema(url: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const columns = await client.query(
      `SELECT table_name, column_name, data_type, udt_name, is_nullable, column_default, datetime_precision
       FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> '_prisma_migrations'
       ORDER BY table_name, column_name`,
    );
    const indexes = await client.query(
      `SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
       AND tablename <> '_prisma_migrations' ORDER BY tablename, indexname`,
    );
    const constraints = await client.query(
      `SELECT conrelid::regclass::text AS table_name, conname, pg_get_constraintdef(oid) AS def
       FROM pg_constraint WHERE connamespace = 'public'::regnamespace
       AND conrelid::regclass::text <> '_prisma_migrations' ORDER BY 1, 2`,
    );
    const enums = await client.query(
      `SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) AS labels
       FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid GROUP BY t.typname ORDER BY t.typname`,
    );
    return { columns: columns.rows, indexes: indexes.rows, constraints: constraints.rows, enums: enums.rows };
  } finally {
    await client.end();
  }
}

describe("migrations", () => {
  let migrated: TestDatabase;
  let fromSchema: TestDatabase;

  beforeAll(async () => {
    migrated = await createTestDatabase(applyMigrations);
    fromSchema = await createTestDatabase(async (url) => {
      const schema = readFileSync(new URL("../prisma/schema.prisma", import.meta.url), "utf8");
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      await client.query(schemaDiffSql(null, schema));
      await client.end();
    });
  });

  afterAll(async () => {
    await migrated?.drop();
    await fromSchema?.drop();
  });

  it("produce exactly the schema that schema.prisma describes", async () => {
    const [actual, expected] = await Promise.all([
      describeSchema(migrated.url),
      describeSchema(fromSchema.url),
    ]);
    expect(actual.columns.length).toBeGreaterThan(40);
    expect(actual).toEqual(expected);
  });

  it("are applied once; a second run changes nothing", async () => {
    const again = await applyMigrations(migrated.url);
    expect(again.applied).toEqual([]);
    expect(again.alreadyApplied.length).toBeGreaterThan(0);
  });

  it("refuse a migration edited after it was applied", async () => {
    const client = new pg.Client({ connectionString: migrated.url });
    await client.connect();
    await client.query(`UPDATE "_prisma_migrations" SET checksum = 'edited'`);
    await client.end();
    await expect(applyMigrations(migrated.url)).rejects.toBeInstanceOf(MigrationChecksumError);
  });

  it("serve the Prisma client: write, read and a unique violation", async () => {
    const db = createDb(fromSchema.url);
    try {
      const page = await db.pageConnection.create({
        data: { companyId: "c1", pageId: "p1", name: "Page", pageAccessTokenEnc: "v1.x" },
      });
      expect(page.status).toBe("active");
      const contact = await db.contact.create({ data: { pageId: "p1", psid: "u1" } });
      const conversation = await db.conversation.create({ data: { pageId: "p1", contactId: contact.id } });
      const row = {
        pageId: "p1",
        conversationId: conversation.id,
        mid: "m1",
        direction: "incoming" as const,
        kind: "text",
        text: "hi",
        status: "received" as const,
        sentAt: new Date(),
        payload: { quickReply: null },
      };
      await db.message.create({ data: row });
      const error = await db.message.create({ data: row }).catch((e: unknown) => e);
      expect(isUniqueViolation(error)).toBe(true);
      await db.pageSubscription.create({
        data: { pageId: "p1", desiredFields: ["messages"], subscribedFields: [] },
      });
      await db.apiKey.create({ data: { companyId: "c1", keyHash: "h", prefix: "sk_" } });
      expect(await db.message.count()).toBe(1);
    } finally {
      await db.$disconnect();
    }
  });
});
