export { createDb, type Db, isUniqueViolation } from "./client";
export * from "./generated/prisma/client";
export {
  applyMigrations,
  listMigrations,
  MIGRATIONS_DIR,
  MigrationChecksumError,
  type MigrationResult,
} from "./migrate";
export { postgresAnswers } from "./probe";
