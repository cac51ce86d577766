import type { Db } from "./client";

/**
 * `SELECT 1` answered within `timeoutMs`, else an error naming PostgreSQL (a stalled server never answers).
 * What every consumer's dependency probe and every /readyz asks of the database.
 */
export async function postgresAnswers(db: Pick<Db, "$queryRaw">, timeoutMs = 1000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`PostgreSQL did not answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    await Promise.race([db.$queryRaw`SELECT 1`, late]);
  } finally {
    clearTimeout(timer);
  }
}
