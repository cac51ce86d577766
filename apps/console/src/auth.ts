import { createHmac, timingSafeEqual } from "node:crypto";
import type { NextFunction, Request, Response } from "express";

export const SESSION_COOKIE = "sb_operator";

/**
 * The operator credential, compared in constant time. The session cookie and the CSRF field are HMACs
 * of the token (never the token itself), so they stop working when the token is rotated.
 */
export interface OperatorAuth {
  matches(candidate: string | undefined): boolean;
  sessionValue: string;
  csrfToken: string;
  matchesCsrf(candidate: unknown): boolean;
  /**
   * Lets a request through with a valid session cookie, bearer token or basic-auth password, and records
   * which one in `res.locals.operator`.
   */
  require(req: Request, res: Response, next: NextFunction): void;
}

function equalSecrets(a: string, b: string): boolean {
  // Fixed-length digests, so neither the content nor the length of the token leaks through timing.
  const digest = (value: string) =>
    createHmac("sha256", "switchboard-console-compare").update(value).digest();
  return timingSafeEqual(digest(a), digest(b));
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? "").split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return undefined;
}

/**
 * How a request was authenticated. A browser sends a cookie or cached basic credentials with any form a
 * foreign site makes it post, so those need the CSRF field; only a bearer header comes from a script.
 */
export type OperatorVia = "session" | "basic" | "bearer";

export function needsCsrf(via: OperatorVia): boolean {
  return via !== "bearer";
}

function presentedCredential(req: Request): { via: "basic" | "bearer"; secret: string } | undefined {
  const authorization = req.headers.authorization ?? "";
  if (authorization.startsWith("Bearer "))
    return { via: "bearer", secret: authorization.slice("Bearer ".length) };
  if (authorization.startsWith("Basic ")) {
    const decoded = Buffer.from(authorization.slice("Basic ".length), "base64").toString("utf8");
    return { via: "basic", secret: decoded.slice(decoded.indexOf(":") + 1) };
  }
  return undefined;
}

/**
 * Failed sign-ins per client address: after `limit` failures within the window the form answers 429
 * until the window ends, so the token cannot be guessed at network speed.
 */
export function createSignInThrottle({ limit = 10, windowMs = 10 * 60_000 } = {}) {
  const failures = new Map<string, { count: number; until: number }>();
  return {
    blocked(client: string, now = Date.now()): boolean {
      const entry = failures.get(client);
      if (entry && entry.until <= now) failures.delete(client);
      return (failures.get(client)?.count ?? 0) >= limit;
    },
    failed(client: string, now = Date.now()) {
      const entry = failures.get(client);
      if (!entry || entry.until <= now) failures.set(client, { count: 1, until: now + windowMs });
      else entry.count++;
    },
  };
}

export function createOperatorAuth(operatorToken: string): OperatorAuth {
  const derive = (purpose: string) => createHmac("sha256", operatorToken).update(purpose).digest("base64url");
  const sessionValue = derive("console-session");
  const csrfToken = derive("console-csrf");
  const auth: OperatorAuth = {
    sessionValue,
    csrfToken,
    matches: (candidate) => typeof candidate === "string" && equalSecrets(candidate, operatorToken),
    matchesCsrf: (candidate) => typeof candidate === "string" && equalSecrets(candidate, csrfToken),
    require(req, res, next) {
      const session = cookieValue(req.headers.cookie, SESSION_COOKIE);
      // The cookie wins: a browser that has it sends it with every request, whatever else it adds.
      if (session !== undefined && equalSecrets(session, sessionValue)) {
        res.locals.operator = "session" satisfies OperatorVia;
        return next();
      }
      const credential = presentedCredential(req);
      if (credential !== undefined && auth.matches(credential.secret)) {
        res.locals.operator = credential.via satisfies OperatorVia;
        return next();
      }
      // Browsers go to the sign-in form; scripts get a 401.
      if (req.method === "GET" && req.accepts(["json", "html"]) === "html")
        return res.redirect(303, "/login");
      res
        .status(401)
        .set("WWW-Authenticate", 'Basic realm="switchboard console"')
        .json({ error: "unauthorized" });
    },
  };
  return auth;
}
