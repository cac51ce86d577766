import pg from "pg";
import { uniqueId } from "./ids";

export interface IsolatedDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

export interface IsolatedDatabaseOptions {
  /** The new database's name is `prefix` + a random id, unless `name` is given. */
  prefix?: string;
  name?: string;
  /** Applies the schema to the new database (`applyMigrations` from @switchboard/db). */
  migrate?: (databaseUrl: string) => Promise<unknown>;
}

async function asAdmin(adminUrl: string, sql: string) {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/**
 * Creates an empty database beside the one `adminUrl` points at, migrates it with `migrate`, and drops
 * it (closing whatever is still connected) on `drop()`, so a run never sees another run's rows.
 */
export async function createIsolatedDatabase(
  adminUrl: string,
  { prefix = "sb_", name = `${prefix}${uniqueId("")}`, migrate }: IsolatedDatabaseOptions = {},
): Promise<IsolatedDatabase> {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a plain database name: ${name}`);
  await asAdmin(adminUrl, `CREATE DATABASE "${name}"`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const database: IsolatedDatabase = {
    url: url.toString(),
    name,
    drop: () => asAdmin(adminUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`),
  };
  try {
    if (migrate) await migrate(database.url);
  } catch (error) {
    await database.drop();
    throw error;
  }
  return database;
}
