export { createDb, type Db, isDataRejection, isUniqueViolation, postgresErrorOf } from "./client";
export * from "./generated/prisma/client";
export {
  applyMigrations,
  listMigrations,
  MIGRATIONS_DIR,
  MigrationChecksumError,
  type MigrationResult,
} from "./migrate";
export { postgresAnswers } from "./probe";
