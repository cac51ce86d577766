import type { Bus } from "@switchboard/bus";
import { parseDuration } from "@switchboard/config";
import {
  findConversation,
  findPageView,
  InvalidCursorError,
  listConversations,
  listMessages,
} from "@switchboard/conversations";
import { createOpsRouter, type ReadinessCheck, type Registry } from "@switchboard/observability";
import { PageNotFoundError } from "@switchboard/pages";
import type { SubscriptionContext } from "@switchboard/subscriptions";
import { listEndpointsWithCompany, replayDeliveries } from "@switchboard/webhooks";
import express, { type Express, type Request, type Response } from "express";
import type { Logger } from "pino";
import { replayUnrouted, resubscribePage } from "./actions";
import { needsCsrf, type Operator, type OperatorAuth, SESSION_COOKIE } from "./auth";
import type { TrustProxy } from "./config";
import { loadOverview, type OverviewDeps } from "./overview";
import { conversationsPage, loginPage, messagesPage, type Notice, overviewPage, webhooksPage } from "./views";

export interface ConsoleDeps {
  auth: OperatorAuth;
  overview: OverviewDeps;
  subscriptions: SubscriptionContext;
  bus: Bus;
  log: Logger;
  registry: Registry;
  checks: ReadinessCheck[];
  /** Rows per page of the overview (CONSOLE_PAGE_SIZE). */
  pageSize?: number;
  /** FB_APP_ID: a thread our app owns is shown as ours. */
  ourAppId?: string;
  /** CONSOLE_TRUST_PROXY: which X-Forwarded-For hops name the client the sign-in throttle counts. */
  trustProxy?: TrustProxy;
}

/** The result of an action, carried in the redirect's query as fields and rendered as text here. */
function noticeOf(query: Request["query"]): Notice | undefined {
  const page = typeof query.page === "string" ? query.page : "";
  switch (query.action) {
    case "resubscribe":
      return query.status === "subscribed"
        ? { text: `Page ${page} re-subscribed and verified.`, error: false }
        : {
            text: `Page ${page}: re-subscribe failed (${String(query.status ?? "error")}): ${String(query.problem ?? "")}`,
            error: true,
          };
    case "replay":
      return {
        text: `Page ${page}: ${Number(query.replayed)} unrouted entries replayed${Number(query.failed) > 0 ? `, ${Number(query.failed)} failed` : ""}.`,
        error: Number(query.failed) > 0,
      };
    case "error":
      return { text: `Page ${page}: ${String(query.problem ?? "the action failed")}`, error: true };
    default:
      return undefined;
  }
}

/** The client as Express sees it: the socket's peer, or the hop CONSOLE_TRUST_PROXY points at. */
const clientOf = (req: Request) => req.ip ?? req.socket.remoteAddress ?? "unknown";

export function createConsoleApp(deps: ConsoleDeps): Express {
  const { auth, log } = deps;
  const app = express();
  app.disable("x-powered-by");
  app.set("trust proxy", deps.trustProxy ?? false);
  app.use(createOpsRouter({ registry: deps.registry, checks: deps.checks }));
  app.use((_req, res, next) => {
    res.set({
      "Content-Security-Policy":
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'",
      "X-Content-Type-Options": "nosniff",
      "Referrer-Policy": "no-referrer",
      "Cache-Control": "no-store",
    });
    next();
  });
  app.use(express.urlencoded({ extended: false, limit: "4kb" }));

  app.get("/login", (_req, res) => {
    res.type("html").send(loginPage(false));
  });
  const tooManyFailures = (res: Response) =>
    res.status(429).type("text/plain").send("too many failed sign-ins from this address, try again later");
  app.post("/login", (req, res) => {
    const client = clientOf(req);
    const session = auth.signIn(req.body?.token, client);
    if (session === "throttled") return tooManyFailures(res);
    if (session === "refused") {
      log.warn({ ip: client, via: "form" }, "console sign-in refused");
      return res.status(401).type("html").send(loginPage(true));
    }
    res.cookie(SESSION_COOKIE, session.value, {
      httpOnly: true,
      maxAge: session.maxAgeMs,
      sameSite: "strict",
      // Behind the TLS-terminating load balancer the request itself is plain HTTP.
      secure: req.secure || req.get("x-forwarded-proto") === "https",
      path: "/",
    });
    res.redirect(303, "/");
  });
  app.post("/logout", async (req, res) => {
    await auth.endSession(req.headers.cookie);
    res.clearCookie(SESSION_COOKIE, { path: "/" });
    res.redirect(303, "/login");
  });

  app.use(async (req, res, next) => {
    const client = clientOf(req);
    const authentication = await auth.authenticate(req.headers, client);
    if (authentication.outcome === "operator") {
      res.locals.operator = authentication.operator;
      return next();
    }
    if (authentication.outcome === "throttled") return tooManyFailures(res);
    if (authentication.outcome === "refused")
      log.warn({ ip: client, path: req.path }, "console credential refused");
    // Browsers go to the sign-in form; scripts get a 401.
    if (req.method === "GET" && req.accepts(["json", "html"]) === "html") return res.redirect(303, "/login");
    res
      .status(401)
      .set("WWW-Authenticate", 'Basic realm="switchboard console"')
      .json({ error: "unauthorized" });
  });
  const operatorOf = (res: Response): Operator => res.locals.operator;
  // State-changing requests carry the CSRF field (the forms), unless a script sent the bearer token alone.
  const checkCsrf = (req: Request, res: Response) => {
    const operator = operatorOf(res);
    if (!needsCsrf(operator) || auth.matchesCsrf(operator, req.body?.csrf)) return true;
    res.status(403).json({ error: "missing or invalid csrf field" });
    return false;
  };

  const pageSize = deps.pageSize ?? 50;
  /** `?offset=&limit=` (at most 500 rows); not `page`: the action notices name a page id with it. */
  const windowOf = (query: Request["query"]) => {
    const number = (value: unknown) =>
      typeof value === "string" && /^\d+$/.test(value) ? Number(value) : undefined;
    return { offset: number(query.offset) ?? 0, limit: Math.min(500, number(query.limit) ?? pageSize) };
  };

  app.get("/", async (req, res) => {
    const overview = await loadOverview(deps.overview, windowOf(req.query));
    const operator = operatorOf(res);
    res.type("html").send(
      overviewPage(overview, {
        csrf: auth.csrfToken(operator),
        signOut: operator.via === "session",
        now: new Date(),
        notice: noticeOf(req.query),
      }),
    );
  });
  app.get("/api/pages", async (req, res) => {
    const { rows, ...rest } = await loadOverview(deps.overview, windowOf(req.query));
    const next = rest.offset + rows.length < rest.total ? rest.offset + rows.length : null;
    res.json({ pages: rows, ...rest, next });
  });

  // A page's conversations and one conversation's messages: what the Conversations API shows, read by the
  // same queries (one screen per keyset cursor), so an operator sees edits, unsends and thread owners.
  const cursorOf = (query: Request["query"]) =>
    typeof query.cursor === "string" && query.cursor.length <= 500 ? query.cursor : undefined;
  const conversationScreen = 50;
  const notFound = (res: Response, what: string) =>
    res.status(404).type("text/plain").send(`${what} not found`);
  const badCursor = (res: Response) =>
    res.status(400).type("text/plain").send("cursor is not one this console issued");

  const loadConversations = async (req: Request) => {
    const pageView = await findPageView(deps.overview.db, String(req.params.pageId));
    if (!pageView) return undefined;
    const cursor = cursorOf(req.query);
    const conversations = await listConversations(deps.overview.db, pageView.pageId, {
      limit: conversationScreen,
      ...(cursor ? { cursor } : {}),
    });
    return { pageView, conversations };
  };
  const loadMessages = async (req: Request) => {
    const id = String(req.params.conversationId);
    if (!/^[0-9a-f-]{36}$/i.test(id)) return undefined;
    const conversation = await findConversation(deps.overview.db, id);
    if (!conversation) return undefined;
    const pageView = await findPageView(deps.overview.db, conversation.pageId);
    if (!pageView) return undefined;
    const cursor = cursorOf(req.query);
    const messages = await listMessages(deps.overview.db, id, {
      limit: conversationScreen,
      order: "asc",
      ...(cursor ? { cursor } : {}),
    });
    return { pageView, conversation, messages };
  };
  const withCursor =
    (handler: (req: Request, res: Response) => Promise<unknown>) => async (req: Request, res: Response) => {
      try {
        await handler(req, res);
      } catch (error) {
        if (error instanceof InvalidCursorError) return badCursor(res);
        throw error;
      }
    };
  const viewOptions = () => ({ now: new Date(), ...(deps.ourAppId ? { ourAppId: deps.ourAppId } : {}) });

  app.get(
    "/pages/:pageId/conversations",
    withCursor(async (req, res) => {
      const loaded = await loadConversations(req);
      if (!loaded) return notFound(res, "page");
      res.type("html").send(conversationsPage(loaded.pageView, loaded.conversations, viewOptions()));
    }),
  );
  app.get(
    "/api/pages/:pageId/conversations",
    withCursor(async (req, res) => {
      const loaded = await loadConversations(req);
      if (!loaded) return res.status(404).json({ error: "page not found" });
      res.json({ page: loaded.pageView, ...loaded.conversations });
    }),
  );
  app.get(
    "/conversations/:conversationId",
    withCursor(async (req, res) => {
      const loaded = await loadMessages(req);
      if (!loaded) return notFound(res, "conversation");
      res
        .type("html")
        .send(messagesPage(loaded.pageView, loaded.conversation, loaded.messages, viewOptions()));
    }),
  );
  app.get(
    "/api/conversations/:conversationId",
    withCursor(async (req, res) => {
      const loaded = await loadMessages(req);
      if (!loaded) return res.status(404).json({ error: "conversation not found" });
      res.json({ page: loaded.pageView, conversation: loaded.conversation, ...loaded.messages });
    }),
  );

  app.post("/pages/:pageId/resubscribe", async (req, res) => {
    if (!checkCsrf(req, res)) return;
    const pageId = String(req.params.pageId);
    try {
      const result = await resubscribePage(deps.subscriptions, pageId);
      log.info({ pageId, action: result.action, status: result.status }, "operator re-subscribed page");
      const query = new URLSearchParams({ action: "resubscribe", page: pageId, status: result.status });
      if (result.problem) query.set("problem", result.problem);
      res.redirect(303, `/?${query}`);
    } catch (error) {
      if (!(error instanceof PageNotFoundError)) throw error;
      res.redirect(
        303,
        `/?${new URLSearchParams({ action: "error", page: pageId, problem: "not connected" })}`,
      );
    }
  });

  app.post("/pages/:pageId/replay-unrouted", async (req, res) => {
    if (!checkCsrf(req, res)) return;
    const pageId = String(req.params.pageId);
    const { replayed, failed } = await replayUnrouted(deps.bus, pageId);
    log.info({ pageId, replayed, failed }, "operator replayed unrouted entries");
    res.redirect(
      303,
      `/?${new URLSearchParams({ action: "replay", page: pageId, replayed: String(replayed), failed: String(failed) })}`,
    );
  });

  const webhookEndpoints = () => listEndpointsWithCompany(deps.overview.db);
  app.get("/webhooks", async (req, res) => {
    const replayed = typeof req.query.replayed === "string" ? req.query.replayed : undefined;
    res.type("html").send(
      webhooksPage(await webhookEndpoints(), {
        csrf: auth.csrfToken(operatorOf(res)),
        now: new Date(),
        ...(replayed ? { notice: { text: `${replayed} deliveries queued again`, error: false } } : {}),
      }),
    );
  });
  app.get("/api/webhooks", async (_req, res) => {
    res.json({ endpoints: await webhookEndpoints() });
  });
  app.post("/webhooks/:endpointId/replay", async (req, res) => {
    if (!checkCsrf(req, res)) return;
    const endpointId = String(req.params.endpointId);
    const sinceMs = parseDuration(String(req.body?.since ?? "24h")) ?? 86_400_000;
    const replayed = await replayDeliveries(deps.overview.db, endpointId, new Date(Date.now() - sinceMs));
    log.info({ endpointId, replayed, sinceMs }, "operator replayed webhook deliveries");
    res.redirect(303, `/webhooks?${new URLSearchParams({ replayed: String(replayed) })}`);
  });

  app.use((error: unknown, _req: Request, res: Response, _next: express.NextFunction) => {
    log.error({ err: error }, "console request failed");
    res.status(500).type("text/plain").send("the console could not do that; see its logs");
  });
  return app;
}
