/**
 * `pnpm --filter @switchboard/message-service explain`: the query plans of the API's listings on a page
 * with 1,000,000 messages (10,000 conversations of ~80 messages and one of 200,000), in a database of its
 * own on DATABASE_URL's server, dropped after. Prints EXPLAIN (ANALYZE, BUFFERS) of each listing as the
 * API runs it: first screen and a screen deep in the history.
 */
import { randomUUID } from "node:crypto";
import { conversationsQuery, messagesQuery } from "@switchboard/conversations";
import { applyMigrations, createDb, type Prisma } from "@switchboard/db";

const server = process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/postgres";
const name = `sb_explain_${Date.now()}`;
const admin = createDb(server, { poolSize: 1 });
await admin.$executeRawUnsafe(`CREATE DATABASE ${name}`);
const url = new URL(server);
url.pathname = `/${name}`;
const db = createDb(url.toString());
const PAGE = "100000000000001";
try {
  await applyMigrations(url.toString());
  const big = randomUUID();
  console.error("filling: 10,001 conversations, 1,000,000 messages …");
  await db.$executeRaw`
    INSERT INTO contacts (id, page_id, psid, updated_at)
    SELECT gen_random_uuid(), ${PAGE}, 'psid-' || n, now() FROM generate_series(0, 10000) n`;
  await db.$executeRaw`
    INSERT INTO conversations (id, page_id, contact_id, last_message_at, updated_at)
    SELECT CASE WHEN ct.psid = 'psid-0' THEN ${big}::uuid ELSE gen_random_uuid() END, ${PAGE}, ct.id,
           now() - (substr(ct.psid, 6)::int * interval '1 minute'), now()
    FROM contacts ct`;
  // 200,000 in the big conversation, 80 in each of the others.
  await db.$executeRaw`
    INSERT INTO messages (id, page_id, conversation_id, mid, direction, kind, text, status, sent_at, updated_at)
    SELECT gen_random_uuid(), ${PAGE}, ${big}::uuid, 'm_big_' || n, 'incoming', 'text', 'hello ' || n,
           'received', now() - (n * interval '1 second'), now()
    FROM generate_series(1, 200000) n`;
  await db.$executeRaw`
    INSERT INTO messages (id, page_id, conversation_id, mid, direction, kind, text, status, sent_at, updated_at)
    SELECT gen_random_uuid(), ${PAGE}, c.id, 'm_' || c.id || '_' || n, 'incoming', 'text', 'hi', 'received',
           c.last_message_at - (n * interval '1 second'), now()
    FROM conversations c CROSS JOIN generate_series(0, 79) n WHERE c.id <> ${big}::uuid`;
  await db.$executeRaw`ANALYZE`;
  const [counted] = await db.$queryRaw<Array<{ count: bigint }>>`SELECT count(*) FROM messages`;
  console.log(`messages on page ${PAGE}: ${counted?.count}\n`);

  const explain = async (title: string, query: Prisma.Sql) => {
    const plan = await db.$queryRawUnsafe<Array<{ "QUERY PLAN": string }>>(
      `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ${query.text}`,
      ...query.values,
    );
    console.log(`### ${title}\n\n\`\`\`\n${plan.map((r) => r["QUERY PLAN"]).join("\n")}\n\`\`\`\n`);
  };
  await explain("Conversations of the page, first screen (50)", conversationsQuery(PAGE, 51));
  const deep = await db.$queryRaw<Array<{ last_message_at: Date; id: string }>>`
    SELECT last_message_at, id FROM conversations WHERE page_id = ${PAGE}
    ORDER BY COALESCE(last_message_at, '-infinity'::timestamptz) DESC, id DESC OFFSET 9000 LIMIT 1`;
  await explain(
    "Conversations of the page, a screen after 9,000 of them (cursor)",
    conversationsQuery(PAGE, 51, [deep[0]!.last_message_at.toISOString(), deep[0]!.id]),
  );
  await explain(
    "Messages of the 200,000-message conversation, newest first (50)",
    messagesQuery(big, 51, "desc"),
  );
  const middle = await db.$queryRaw<Array<{ sent_at: Date; mid: string; id: string }>>`
    SELECT sent_at, mid, id FROM messages WHERE conversation_id = ${big}::uuid
    ORDER BY sent_at, mid, id OFFSET 100000 LIMIT 1`;
  await explain(
    "Messages of the 200,000-message conversation, oldest first, after 100,000 of them (cursor)",
    messagesQuery(big, 51, "asc", [middle[0]!.sent_at.toISOString(), middle[0]!.mid, middle[0]!.id]),
  );
} finally {
  await db.$disconnect();
  await admin.$executeRawUnsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.$disconnect();
}
