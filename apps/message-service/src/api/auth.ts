import { hashApiKey } from "@switchboard/contracts";
import type { Db } from "@switchboard/db";
import type { NextFunction, Request, Response } from "express";
import type { Logger } from "pino";
import { sendError } from "./errors";

/** The company an API key belongs to, set by `requireApiKey` for the routes after it. */
export interface Caller {
  companyId: string;
  apiKeyId: string;
}

export function callerOf(res: Response): Caller {
  return res.locals.caller as Caller;
}

const LAST_USED_RESOLUTION_MS = 60_000;

/**
 * `Authorization: Bearer <key>`: the key's SHA-256 must match an unrevoked row of `api_keys`. Missing,
 * unknown and revoked keys get the same 401, so the answer says nothing about which keys exist.
 */
export function requireApiKey(db: Db, log: Logger) {
  return async (req: Request, res: Response, next: NextFunction) => {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(req.get("authorization") ?? "");
    const key = match?.[1];
    const apiKey = key ? await db.apiKey.findUnique({ where: { keyHash: hashApiKey(key) } }) : null;
    if (!apiKey || apiKey.revokedAt) {
      res.set("WWW-Authenticate", 'Bearer realm="switchboard"');
      sendError(res, 401, "unauthorized", "a valid API key is required: Authorization: Bearer <key>");
      return;
    }
    res.locals.caller = { companyId: apiKey.companyId, apiKeyId: apiKey.id } satisfies Caller;
    // At most one write a minute per key: knowing a key is in use does not need every request.
    const now = new Date();
    if (!apiKey.lastUsedAt || now.getTime() - apiKey.lastUsedAt.getTime() > LAST_USED_RESOLUTION_MS) {
      db.apiKey
        .update({ where: { id: apiKey.id }, data: { lastUsedAt: now } })
        .catch((error: unknown) =>
          log.warn({ err: error, apiKeyId: apiKey.id }, "api key last-used update failed"),
        );
    }
    next();
  };
}
