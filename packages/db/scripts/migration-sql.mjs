// Writes prisma/migrations/<timestamp>_<name>/migration.sql: the SQL from the committed schema
// (git HEAD) to the working one. Review it, then commit both.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { schemaDiffSql } from "./schema-diff.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const name = process.argv[2];
if (!name || !/^[a-z0-9_]+$/.test(name)) {
  console.error("usage: pnpm --filter @switchboard/db migration:sql <snake_case_name>");
  process.exit(2);
}

let committed = null;
try {
  committed = execFileSync("git", ["show", "HEAD:./prisma/schema.prisma"], {
    cwd: root,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "ignore"],
  });
} catch {
  // no committed schema yet: diff from an empty database
}
const sql = schemaDiffSql(committed, readFileSync(join(root, "prisma/schema.prisma"), "utf8"));
if (!/\S/.test(sql.replace(/^--.*$/gm, ""))) {
  console.error("schema.prisma has no changes against HEAD: no migration written");
  process.exit(1);
}
const stamp = new Date().toISOString().replace(/\D/g, "").slice(0, 14);
const dir = join(root, "prisma/migrations", `${stamp}_${name}`);
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, "migration.sql"), sql);
console.log(`wrote ${dir}/migration.sql`);
