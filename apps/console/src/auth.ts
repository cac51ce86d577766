import { createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { createSessionCodec, type Session, type SessionRevocations } from "./sessions";

export const SESSION_COOKIE = "sb_operator";

/**
 * Who a request was let in as. A browser sends a cookie or cached basic credentials with any form a
 * foreign site makes it post, so those need the CSRF field; only a bearer header comes from a script.
 */
export type Operator =
  | { via: "session"; sessionId: string; expiresAt: number }
  | { via: "basic" }
  | { via: "bearer" };

export function needsCsrf(operator: Operator | undefined): boolean {
  return operator?.via !== "bearer";
}

/** What a request's credentials came to. */
export type Authentication =
  | { outcome: "operator"; operator: Operator }
  /** The client address failed too often: nothing it presented was checked. */
  | { outcome: "throttled" }
  /** A wrong token or a cookie not signed by us: counted against the address. */
  | { outcome: "refused" }
  /** Nothing presented, or a session that has ended: no guess, so not counted. */
  | { outcome: "anonymous" };

export interface OperatorAuthOptions {
  operatorToken: string;
  /** CONSOLE_SESSION_TTL: a session ends this long after sign-in, whatever happens in between. */
  sessionTtlMs: number;
  revocations: SessionRevocations;
  throttle?: SignInThrottle;
  now?: () => number;
}

/**
 * The operator credential, compared in constant time. Session cookies and CSRF fields are signed with keys
 * derived from the token (never the token itself), so they stop working when the token is rotated.
 */
export interface OperatorAuth {
  /** The sign-in form: a new session (the cookie's value and how long the browser keeps it) for the token. */
  signIn(token: unknown, client: string): { value: string; maxAgeMs: number } | "throttled" | "refused";
  /** Revokes the session in a Cookie header, on every replica, so its cookie cannot be replayed. */
  endSession(cookieHeader: string | undefined): Promise<void>;
  /**
   * The operator behind a request's session cookie, bearer token or basic-auth password. Every guess, on
   * every path, counts against the client address (as Express sees it, so behind CONSOLE_TRUST_PROXY).
   */
  authenticate(headers: IncomingHttpHeaders, client: string): Promise<Authentication>;
  /** The CSRF field for this operator's forms: one per session, so a signed-out session's field is dead too. */
  csrfToken(operator: Operator): string;
  matchesCsrf(operator: Operator, candidate: unknown): boolean;
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
    if (key === name) {
      try {
        return decodeURIComponent(rest.join("="));
      } catch {
        return rest.join("=");
      }
    }
  }
  return undefined;
}

function presentedCredential(
  headers: IncomingHttpHeaders,
): { via: "basic" | "bearer"; secret: string } | undefined {
  const authorization = headers.authorization ?? "";
  if (authorization.startsWith("Bearer "))
    return { via: "bearer", secret: authorization.slice("Bearer ".length) };
  if (authorization.startsWith("Basic ")) {
    const decoded = Buffer.from(authorization.slice("Basic ".length), "base64").toString("utf8");
    return { via: "basic", secret: decoded.slice(decoded.indexOf(":") + 1) };
  }
  return undefined;
}

export type SignInThrottle = ReturnType<typeof createSignInThrottle>;

/**
 * Failed sign-ins per client address: after `limit` failures within the window every credential from that
 * address is refused unchecked until the window ends, so the token cannot be guessed at network speed.
 * Each replica counts its own.
 */
export function createSignInThrottle({ limit = 10, windowMs = 10 * 60_000, maxClients = 10_000 } = {}) {
  const failures = new Map<string, { count: number; until: number }>();
  const forgetEnded = (now: number) => {
    for (const [client, entry] of failures) if (entry.until <= now) failures.delete(client);
  };
  return {
    blocked(client: string, now = Date.now()): boolean {
      const entry = failures.get(client);
      if (entry && entry.until <= now) failures.delete(client);
      return (failures.get(client)?.count ?? 0) >= limit;
    },
    failed(client: string, now = Date.now()) {
      const entry = failures.get(client);
      if (entry && entry.until > now) entry.count++;
      else {
        // Many addresses (IPv6 makes them cheap): drop the ended windows before holding another.
        if (failures.size >= maxClients) forgetEnded(now);
        failures.set(client, { count: 1, until: now + windowMs });
      }
    },
  };
}

export function createOperatorAuth(options: OperatorAuthOptions): OperatorAuth {
  const {
    operatorToken,
    sessionTtlMs,
    revocations,
    throttle = createSignInThrottle(),
    now = Date.now,
  } = options;
  // Purposes unlike the earlier static cookie's and CSRF field's, whose values must not become keys.
  const derive = (purpose: string) => createHmac("sha256", operatorToken).update(purpose).digest();
  const sessions = createSessionCodec(derive("console-session-signing-key"));
  const csrfKey = derive("console-csrf-signing-key");
  const csrfToken = (operator: Operator) =>
    createHmac("sha256", csrfKey)
      .update(operator.via === "session" ? `session:${operator.sessionId}` : "credential")
      .digest("base64url");

  const sessionIn = (cookieHeader: string | undefined) => {
    const value = cookieValue(cookieHeader, SESSION_COOKIE);
    return value === undefined ? undefined : sessions.read(value, equalSecrets);
  };
  const live = async (session: Session) =>
    // A TTL shortened since sign-in applies to sessions issued before it.
    now() < Math.min(session.expiresAt, session.issuedAt + sessionTtlMs) &&
    !(await revocations.isRevoked(session.id));
  const matches = (candidate: unknown) =>
    typeof candidate === "string" && equalSecrets(candidate, operatorToken);

  return {
    signIn(token, client) {
      if (throttle.blocked(client, now())) return "throttled";
      if (!matches(token)) {
        throttle.failed(client, now());
        return "refused";
      }
      return { value: sessions.issue(now(), sessionTtlMs).value, maxAgeMs: sessionTtlMs };
    },
    async endSession(cookieHeader) {
      const session = sessionIn(cookieHeader);
      if (session) await revocations.revoke(session.id, new Date(session.expiresAt));
    },
    async authenticate(headers, client) {
      // The cookie wins: a browser that has it sends it with every request, whatever else it adds.
      // A live session passes even from a throttled address: its signature cannot be guessed, and other
      // people's guesses from behind the same address should not lock its operator out.
      const cookie = cookieValue(headers.cookie, SESSION_COOKIE);
      const session = cookie === undefined ? undefined : sessions.read(cookie, equalSecrets);
      if (session && (await live(session))) {
        return {
          outcome: "operator",
          operator: { via: "session", sessionId: session.id, expiresAt: session.expiresAt },
        };
      }
      const forged = cookie !== undefined && session === undefined;
      const credential = presentedCredential(headers);
      if (!forged && credential === undefined) return { outcome: "anonymous" };
      if (throttle.blocked(client, now())) return { outcome: "throttled" };
      if (credential !== undefined && matches(credential.secret)) {
        return { outcome: "operator", operator: { via: credential.via } };
      }
      throttle.failed(client, now());
      return { outcome: "refused" };
    },
    csrfToken,
    matchesCsrf: (operator, candidate) =>
      typeof candidate === "string" && equalSecrets(candidate, csrfToken(operator)),
  };
}
