// The SQL that takes a database from one schema.prisma to another, computed offline by Prisma 6.19's
// WebAssembly schema engine: Prisma 7's migrate engine cannot be downloaded here (../shared/environment.md).
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);

/** @param {string | null} fromSchema schema text, or null for an empty database @param {string} toSchema */
export function schemaDiffSql(fromSchema, toSchema) {
  const work = mkdtempSync(join(tmpdir(), "sb-schema-diff-"));
  try {
    // Prisma 6 wants the url in the datasource block, which Prisma 7 forbids.
    const forPrisma6 = (schema) =>
      schema.replace(/provider\s*=\s*"postgresql"/, '$&\n  url      = env("DATABASE_URL")');
    const to = join(work, "to.prisma");
    writeFileSync(to, forPrisma6(toSchema));
    const from = fromSchema === null ? null : join(work, "from.prisma");
    if (from) writeFileSync(from, forPrisma6(fromSchema));
    const config = join(work, "prisma6.config.mjs");
    writeFileSync(
      config,
      `import { PrismaPg } from ${JSON.stringify(import.meta.resolve("prisma6-adapter-pg"))};
export default {
  experimental: { adapter: true },
  engine: "js",
  schema: ${JSON.stringify(to)},
  async adapter() { return new PrismaPg({ connectionString: process.env.DATABASE_URL }); },
};
`,
    );
    const placeholder = fileURLToPath(import.meta.url);
    const cli = join(require.resolve("prisma6/package.json"), "..", "build/index.js");
    return execFileSync(
      process.execPath,
      [
        cli,
        "migrate",
        "diff",
        "--config",
        config,
        ...(from ? ["--from-schema-datamodel", from] : ["--from-empty"]),
        "--to-schema-datamodel",
        to,
        "--script",
      ],
      {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
        env: {
          ...process.env,
          DATABASE_URL: process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/postgres",
          PRISMA_QUERY_ENGINE_LIBRARY: placeholder,
          PRISMA_SCHEMA_ENGINE_BINARY: placeholder,
          PRISMA_HIDE_UPDATE_MESSAGE: "1",
          CHECKPOINT_DISABLE: "1",
        },
      },
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
