import { readFileSync } from "node:fs";
import { createTestDatabase, type TestDatabase } from "@switchboard/testing";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { schemaDiffSql } from "../scripts/schema-diff.mjs";
import { applyMigrations, createDb, isUniqueViolation, MigrationChecksumError } from "./index";

/**
 * Expression indexes, which schema.prisma cannot state: only the migrations create them (the API's
 * listings order by these expressions).
 */
const SQL_ONLY_INDEXES = ["conversations_page_listing_idx", "messages_conversation_listing_idx"];

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
       AND tablename <> '_prisma_migrations' AND NOT indexname = ANY($1) ORDER BY tablename, indexname`,
      [SQL_ONLY_INDEXES],
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

  it("create the listing indexes on the expressions the API orders by", async () => {
    const client = new pg.Client({ connectionString: migrated.url });
    await client.connect();
    try {
      const { rows } = await client.query(
        "SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY($1) ORDER BY indexname",
        [SQL_ONLY_INDEXES],
      );
      expect(rows.map((r) => r.indexdef)).toEqual([
        expect.stringMatching(
          /\(page_id, COALESCE\(last_message_at, '-infinity'::timestamp with time zone\) DESC, id DESC\)/,
        ),
        expect.stringMatching(/\(conversation_id, sent_at, COALESCE\(mid, ''::text\), id\)/),
      ]);
    } finally {
      await client.end();
    }
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
