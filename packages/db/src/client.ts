import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient } from "./generated/prisma/client";

export type Db = PrismaClient;

/** A Prisma client over node-postgres (no engine binary at run time). */
export function createDb(databaseUrl: string, { poolSize = 10 }: { poolSize?: number } = {}): Db {
  const adapter = new PrismaPg({ connectionString: databaseUrl, max: poolSize });
  return new PrismaClient({ adapter });
}

/** True when `error` is a unique-constraint violation (Prisma's P2002), whatever the driver adapter. */
export function isUniqueViolation(error: unknown): boolean {
  return typeof error === "object" && error !== null && (error as { code?: string }).code === "P2002";
}

/** PostgreSQL's own SQLSTATE and message behind a Prisma error (raw queries report them as P2010). */
export function postgresErrorOf(error: unknown): { code: string; message: string } | undefined {
  const cause = (
    error as {
      meta?: { driverAdapterError?: { cause?: { originalCode?: unknown; originalMessage?: unknown } } };
    }
  )?.meta?.driverAdapterError?.cause;
  if (typeof cause?.originalCode !== "string") return undefined;
  return { code: cause.originalCode, message: String(cause.originalMessage ?? "") };
}

/**
 * True when PostgreSQL refused the data itself (SQLSTATE class 22, data exception: a value out of range, a
 * byte it cannot store): the same input fails the same way every time, so retrying cannot help.
 */
export function isDataRejection(error: unknown): boolean {
  return postgresErrorOf(error)?.code.startsWith("22") ?? false;
}
