import { env, loadConfig } from "@switchboard/config";
import { z } from "zod";
import { applyMigrations } from "./migrate";

const config = loadConfig(z.object({ DATABASE_URL: env.databaseUrl() }));

/**
 * Creates the database named in DATABASE_URL when it is missing (a new laptop). Where the role cannot
 * reach the maintenance database (a managed Postgres), the database is assumed to exist.
 */
async function ensureDatabase(url: string) {
  const { default: pg } = await import("pg");
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.slice(1));
  const admin = new URL(url);
  admin.pathname = "/postgres";
  const client = new pg.Client({ connectionString: admin.toString() });
  try {
    await client.connect();
  } catch {
    return;
  }
  try {
    const exists = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
    if (exists.rowCount === 0) {
      await client.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
      console.log(`created database ${name}`);
    }
  } finally {
    await client.end();
  }
}

try {
  await ensureDatabase(config.DATABASE_URL);
  const result = await applyMigrations(config.DATABASE_URL);
  for (const name of result.applied) console.log(`applied ${name}`);
  console.log(
    `database is up to date (${result.applied.length} applied, ${result.alreadyApplied.length} already there)`,
  );
} catch (error) {
  console.error(`db:migrate failed: ${(error as Error).message}`);
  process.exit(1);
}
