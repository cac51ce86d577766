import { createHmac, randomBytes } from "node:crypto";
import type { Db } from "@switchboard/db";

/**
 * An operator's signed-in session. The cookie carries it signed, so every console replica checks it on its
 * own; only sign-outs are shared (see SessionRevocations).
 */
export interface Session {
  id: string;
  issuedAt: number;
  expiresAt: number;
}

/** Sessions signed out before they expired, as every replica sees them. */
export interface SessionRevocations {
  revoke(id: string, expiresAt: Date): Promise<void>;
  isRevoked(id: string): Promise<boolean>;
}

/** `<id>.<issued at ms>.<expires at ms>.<HMAC of the three>`: cookie-safe characters only. */
export function createSessionCodec(key: Buffer | string) {
  const sign = (payload: string) => createHmac("sha256", key).update(payload).digest("base64url");
  return {
    issue(now: number, ttlMs: number): { session: Session; value: string } {
      const session = { id: randomBytes(18).toString("base64url"), issuedAt: now, expiresAt: now + ttlMs };
      const payload = `${session.id}.${session.issuedAt}.${session.expiresAt}`;
      return { session, value: `${payload}.${sign(payload)}` };
    },
    /** The session a value carries, or undefined when it was not signed with this key. */
    read(value: string, equal: (a: string, b: string) => boolean): Session | undefined {
      const parts = value.split(".");
      if (parts.length !== 4) return undefined;
      const [id, issuedAt, expiresAt, signature] = parts as [string, string, string, string];
      if (!equal(signature, sign(`${id}.${issuedAt}.${expiresAt}`))) return undefined;
      return { id, issuedAt: Number(issuedAt), expiresAt: Number(expiresAt) };
    },
  };
}

/** The revocation list in PostgreSQL, which every replica already reads; expired rows are pruned on sign-out. */
export function createSessionRevocations(db: Db): SessionRevocations {
  return {
    async revoke(id, expiresAt) {
      await db.consoleSessionRevocation.createMany({ data: [{ id, expiresAt }], skipDuplicates: true });
      await db.consoleSessionRevocation.deleteMany({ where: { expiresAt: { lte: new Date() } } });
    },
    async isRevoked(id) {
      return (await db.consoleSessionRevocation.count({ where: { id } })) > 0;
    },
  };
}
