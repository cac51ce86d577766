import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import express, { type Request, type Response, type Router } from "express";
import type { FakeMetaState, GraphEndpointName, InjectedError, ThreadMessage } from "./state";

/** Fields a Messenger app can subscribe a page to (the ones Switchboard uses, and a few more). */
export const SUBSCRIBABLE_FIELDS = new Set([
  "messages",
  "messaging_postbacks",
  "message_deliveries",
  "message_reads",
  "message_echoes",
  "message_reactions",
  "messaging_referrals",
  "messaging_optins",
  "message_edits",
  "messaging_handovers",
  "messaging_policy_enforcement",
  "messaging_account_linking",
  "standby",
  "feed",
]);

const PROFILE_FIELDS = new Set(["id", "name", "first_name", "last_name", "profile_pic"]);
const MESSAGING_TYPES = new Set(["RESPONSE", "UPDATE", "MESSAGE_TAG"]);
const CONVERSATION_FIELDS = new Set(["id", "updated_time", "messages"]);
const MESSAGE_FIELDS = new Set(["id", "message", "created_time", "from", "to"]);

/**
 * A Graph `fields` list with nested selections, e.g. `id,messages{id,message,from}` →
 * `[["id"], ["messages", ["id", "message", "from"]]]`. Modifiers such as `.limit(5)` are dropped.
 */
export function parseFields(text: string): Array<[string, string[] | undefined]> {
  const fields: Array<[string, string[] | undefined]> = [];
  let depth = 0;
  let start = 0;
  const take = (part: string) => {
    const trimmed = part.trim();
    if (!trimmed) return;
    const brace = trimmed.indexOf("{");
    const name = (brace < 0 ? trimmed : trimmed.slice(0, brace)).split(".")[0]!.trim();
    const nested = brace < 0 ? undefined : parseFields(trimmed.slice(brace + 1, trimmed.lastIndexOf("}")));
    fields.push([name, nested?.map(([n]) => n)]);
  };
  for (let i = 0; i < text.length; i++) {
    if (text[i] === "{") depth++;
    else if (text[i] === "}") depth--;
    else if (text[i] === "," && depth === 0) {
      take(text.slice(start, i));
      start = i + 1;
    }
  }
  take(text.slice(start));
  return fields;
}

/** Meta's timestamps in Graph answers: ISO 8601 with a `+0000` offset and no milliseconds. */
const graphTime = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "+0000");

/** A stable thread id per page and person, shaped like Meta's (`t_` and digits). */
const threadId = (pageId: string, psid: string) =>
  `t_${BigInt(`0x${createHash("sha256").update(`${pageId}:${psid}`).digest("hex").slice(0, 15)}`)}`;

export interface MetaError {
  status: number;
  code?: number;
  subcode?: number;
  type: string;
  message: string;
  isTransient?: boolean;
}

/** What Meta answers for a code when a test injects only the code. */
export function defaultErrorFor(code: number | undefined, subcode?: number): MetaError {
  if (code === undefined) {
    return { status: 500, type: "OAuthException", message: "An unexpected error has occurred.", code: 2 };
  }
  if (code === 190) {
    return { status: 400, code, subcode, type: "OAuthException", message: "Error validating access token." };
  }
  if (code === 4) {
    return {
      status: 400,
      code,
      subcode,
      type: "OAuthException",
      message: "(#4) Application request limit reached",
    };
  }
  if (code === 17) {
    return {
      status: 400,
      code,
      subcode,
      type: "OAuthException",
      message: "(#17) User request limit reached",
    };
  }
  if (code === 32) {
    return {
      status: 400,
      code,
      subcode,
      type: "OAuthException",
      message: "(#32) Page request limit reached",
    };
  }
  if (code === 613) {
    return {
      status: 400,
      code,
      subcode,
      type: "OAuthException",
      message: "(#613) Calls to this api have exceeded the rate limit.",
    };
  }
  if (code >= 80001 && code <= 80014) {
    return {
      status: 400,
      code,
      subcode,
      type: "OAuthException",
      message: `(#${code}) There have been too many calls to this Page account. Wait a bit and try again.`,
    };
  }
  if (code === 1 || code === 2 || code === 1200) {
    return {
      status: code === 2 ? 503 : 500,
      code,
      subcode,
      type: "OAuthException",
      message:
        code === 1200
          ? "Temporary send message failure. Please try again later."
          : "An unexpected error has occurred. Please retry your request later.",
      isTransient: true,
    };
  }
  if (code === 551) {
    return {
      status: 400,
      code,
      subcode: subcode ?? 1545041,
      type: "OAuthException",
      message: "(#551) This person isn't available right now.",
    };
  }
  if (code === 10 && subcode !== undefined && [2018278, 2018108, 2018065].includes(subcode)) {
    return {
      status: 400,
      code,
      subcode,
      type: "OAuthException",
      message: "(#10) This message is sent outside of allowed window.",
    };
  }
  if (code === 10 || (code >= 200 && code <= 299)) {
    return { status: 403, code, subcode, type: "OAuthException", message: `(#${code}) Permissions error` };
  }
  if (code === 100) {
    return { status: 400, code, subcode, type: "GraphMethodException", message: "(#100) Invalid parameter" };
  }
  return { status: 400, code, subcode, type: "OAuthException", message: `(#${code}) Error` };
}

function fbtraceId(): string {
  return randomBytes(8).toString("base64url");
}

function sendError(res: Response, error: MetaError): void {
  res.status(error.status).json({
    error: {
      message: error.message,
      type: error.type,
      ...(error.code === undefined ? {} : { code: error.code }),
      ...(error.subcode === undefined ? {} : { error_subcode: error.subcode }),
      ...(error.isTransient ? { is_transient: true } : {}),
      fbtrace_id: fbtraceId(),
    },
  });
}

function sendInjected(res: Response, injected: InjectedError): void {
  if (injected.htmlBody) {
    res
      .status(injected.status ?? 502)
      .type("html")
      .send("<html><body>Bad Gateway</body></html>");
    return;
  }
  const base =
    injected.code === undefined && injected.status !== undefined && injected.status < 500
      ? { status: injected.status, type: "OAuthException", message: "Error" }
      : defaultErrorFor(injected.code, injected.subcode);
  sendError(res, {
    ...base,
    status: injected.status ?? base.status,
    ...(injected.subcode === undefined ? {} : { subcode: injected.subcode }),
    ...(injected.message === undefined ? {} : { message: injected.message }),
    ...(injected.type === undefined ? {} : { type: injected.type }),
  });
}

function tokenOf(req: Request): string | undefined {
  const header = req.get("authorization");
  const match = header ? /^(?:Bearer|OAuth)\s+(.+)$/i.exec(header) : null;
  if (match) return match[1];
  const fromQuery = req.query.access_token;
  if (typeof fromQuery === "string") return fromQuery;
  const fromBody = (req.body as Record<string, unknown> | undefined)?.access_token;
  return typeof fromBody === "string" ? fromBody : undefined;
}

function proofOf(req: Request): string | undefined {
  const value =
    req.query.appsecret_proof ?? (req.body as Record<string, unknown> | undefined)?.appsecret_proof;
  return typeof value === "string" ? value : undefined;
}

export function proofIsValid(
  token: string | undefined,
  proof: string | undefined,
  appSecret: string,
): boolean {
  if (!token || !proof || !/^[0-9a-f]{64}$/i.test(proof)) return false;
  const expected = createHmac("sha256", appSecret).update(token).digest();
  return timingSafeEqual(expected, Buffer.from(proof, "hex"));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function usageHeaders(res: Response, pageId: string | undefined, percent: number): void {
  const counts = { call_count: percent, total_cputime: percent, total_time: percent };
  res.set("X-App-Usage", JSON.stringify(counts));
  if (!pageId) return;
  res.set("X-Page-Usage", JSON.stringify(counts));
  res.set(
    "X-Business-Use-Case-Usage",
    JSON.stringify({
      [pageId]: [{ type: "pages", ...counts, estimated_time_to_regain_access: percent >= 100 ? 5 : 0 }],
    }),
  );
}

export interface GraphRouterOptions {
  state: FakeMetaState;
  appSecret: string;
  appId: string;
  /** When set, other versions in the path are refused (catches a service ignoring GRAPH_API_VERSION). */
  graphApiVersion?: string;
  onMessageSent: (
    sent: { pageId: string; psid: string; mid: string; body: Record<string, unknown> },
    phase: { beforeAnswer: boolean },
  ) => Promise<void>;
  requireAppsecretProof?: boolean;
}

interface Authorised {
  token: string;
  tokenPageId: string;
}

/** The Graph API calls Switchboard makes, with Meta's checks and error shapes. */
export function createGraphRouter(options: GraphRouterOptions): Router {
  const { state, appSecret, appId } = options;
  const requireProof = options.requireAppsecretProof ?? true;
  const router = express.Router();
  router.use(express.json({ limit: "1mb" }), express.urlencoded({ extended: true }));

  /**
   * The checks Meta makes before the edge runs: records the call, applies injected faults, then token
   * validity, appsecret_proof and that the token may act on `pageId`. Answers and returns undefined on failure.
   */
  async function authorise(
    req: Request,
    res: Response,
    endpoint: GraphEndpointName,
    target: { pageId?: string; psid?: string; pageScoped: boolean },
  ): Promise<Authorised | undefined> {
    const version = String(req.params.version);
    const token = tokenOf(req);
    const info = token ? state.tokenInfo(token) : undefined;
    // `me` resolves to the token's page, as at Meta; a profile call is filed under the person's page.
    const pageId = target.pageId === "me" ? info?.pageId : (target.pageId ?? info?.pageId);
    const appsecretProofValid = proofIsValid(token, proofOf(req), appSecret);
    state.recordCall({
      method: req.method,
      path: req.path,
      endpoint,
      ...(pageId ? { pageId } : {}),
      ...(target.psid ? { psid: target.psid } : {}),
      ...(token ? { token } : {}),
      appsecretProofValid,
      query: { ...req.query },
      body: req.body,
      at: Date.now(),
    });
    usageHeaders(res, pageId, state.usage(pageId));

    if (!/^v\d+\.\d+$/.test(version) || (options.graphApiVersion && version !== options.graphApiVersion)) {
      sendError(res, {
        status: 400,
        code: 2500,
        type: "OAuthException",
        message: `Unknown path components: /${version}`,
      });
      return undefined;
    }
    let injected = pageId ? state.takeInjectedError(pageId, endpoint, req.method) : undefined;
    if (injected?.afterSending) {
      // Applied by the edge once it has done its work (the Send API: a lost answer).
      res.locals.afterSending = injected;
      injected = undefined;
    }
    if (injected?.delayMs) await sleep(injected.delayMs);
    if (injected && (injected.code !== undefined || injected.status !== undefined || injected.htmlBody)) {
      sendInjected(res, injected);
      return undefined;
    }
    if (!token) {
      sendError(res, {
        status: 400,
        code: 104,
        type: "OAuthException",
        message: "An access token is required to request this resource.",
      });
      return undefined;
    }
    if (!info) {
      sendError(res, {
        status: 400,
        code: 190,
        type: "OAuthException",
        message: "Invalid OAuth access token - Cannot parse access token",
      });
      return undefined;
    }
    if (info.status !== "valid") {
      sendError(res, {
        status: 400,
        code: 190,
        subcode: info.status === "revoked" ? 460 : 463,
        type: "OAuthException",
        message:
          info.status === "revoked"
            ? "Error validating access token: The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons."
            : "Error validating access token: Session has expired.",
      });
      return undefined;
    }
    if (requireProof && !appsecretProofValid) {
      sendError(res, {
        status: 400,
        code: 100,
        type: "GraphMethodException",
        message: "Invalid appsecret_proof provided in the API argument",
      });
      return undefined;
    }
    if (target.pageScoped && pageId !== info.pageId) {
      sendError(res, {
        status: 403,
        code: 200,
        type: "OAuthException",
        message: "(#200) The access token does not belong to this Page: use the Page's own access token",
      });
      return undefined;
    }
    return { token, tokenPageId: info.pageId };
  }

  router.all("/:version/:pageId/subscribed_apps", async (req, res) => {
    const pageId = String(req.params.pageId);
    const auth = await authorise(req, res, "subscribed_apps", { pageId, pageScoped: true });
    if (!auth) return;
    const page = state.page(auth.tokenPageId)!;
    if (req.method === "GET") {
      res.json({
        data: page.subscribedFields
          ? [
              {
                category: "Business",
                link: `https://fake-meta.invalid/apps/${appId}`,
                name: "Switchboard",
                id: appId,
                subscribed_fields: page.subscribedFields,
              },
            ]
          : [],
      });
      return;
    }
    if (req.method === "DELETE") {
      state.dropSubscription(page.pageId);
      res.json({ success: true });
      return;
    }
    if (req.method !== "POST") {
      sendError(res, {
        status: 400,
        code: 100,
        type: "GraphMethodException",
        message: "Unsupported request",
      });
      return;
    }
    const raw =
      req.query.subscribed_fields ?? (req.body as Record<string, unknown> | undefined)?.subscribed_fields;
    const fields = (Array.isArray(raw) ? raw.map(String) : typeof raw === "string" ? raw.split(",") : [])
      .map((f) => f.trim())
      .filter(Boolean);
    if (fields.length === 0) {
      sendError(res, {
        status: 400,
        code: 100,
        type: "OAuthException",
        message: "(#100) The parameter subscribed_fields is required",
      });
      return;
    }
    const unknown = fields.find((f) => !SUBSCRIBABLE_FIELDS.has(f));
    if (unknown) {
      sendError(res, {
        status: 400,
        code: 100,
        type: "OAuthException",
        message: `(#100) Param subscribed_fields[${fields.indexOf(unknown)}] must be one of {${[...SUBSCRIBABLE_FIELDS].join(", ")}} - got "${unknown}".`,
      });
      return;
    }
    state.subscribe(page.pageId, fields);
    res.json({ success: true });
  });

  router.post("/:version/:pageId/messages", async (req, res) => {
    const auth = await authorise(req, res, "messages", {
      pageId: String(req.params.pageId),
      pageScoped: true,
    });
    if (!auth) return;
    const body = req.body as Record<string, unknown>;
    const bad = (message: string, subcode?: number) =>
      sendError(res, { status: 400, code: 100, subcode, type: "OAuthException", message });
    const recipient = parseMaybeJson(body.recipient) as { id?: unknown } | undefined;
    const message = parseMaybeJson(body.message) as Record<string, unknown> | undefined;
    if (!recipient || typeof recipient.id !== "string" || recipient.id === "") {
      return bad("(#100) The parameter recipient is required");
    }
    const messagingType = body.messaging_type;
    if (typeof messagingType !== "string" || !MESSAGING_TYPES.has(messagingType)) {
      return bad("(#100) Param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}");
    }
    if (messagingType === "MESSAGE_TAG" && typeof body.tag !== "string") {
      return bad("(#100) Param tag is required with messaging_type MESSAGE_TAG");
    }
    if (!message || typeof message !== "object") return bad("(#100) The parameter message is required");
    const hasText = typeof message.text === "string" && message.text !== "";
    const hasAttachment = typeof message.attachment === "object" && message.attachment !== null;
    if (hasText === hasAttachment) return bad("(#100) Param message must contain either text or attachment");
    if (hasText && (message.text as string).length > 2000) {
      return bad("(#100) Length of param message[text] must be less than or equal to 2000");
    }
    const user = state.user(recipient.id);
    if (!user || user.pageId !== auth.tokenPageId) return bad("(#100) No matching user found", 2018001);

    const mid = `m_${randomBytes(24).toString("base64url")}`;
    const sent = { pageId: auth.tokenPageId, psid: user.psid, mid, body: { ...body, recipient, message } };
    state.recordSentMessage({ ...sent, at: Date.now() });
    const mode =
      state.echoMode === "random" ? (Math.random() < 0.5 ? "before" : "after") : (state.echoMode as string);
    if (mode === "before") await options.onMessageSent(sent, { beforeAnswer: true });
    const lost = res.locals.afterSending as InjectedError | undefined;
    if (lost) {
      // Sent, but the caller never learns it: a timeout, a 5xx from a proxy, a dropped connection.
      if (mode === "after") void options.onMessageSent(sent, { beforeAnswer: false });
      if (lost.delayMs) await sleep(lost.delayMs);
      if (lost.dropConnection || (lost.code === undefined && lost.status === undefined && !lost.htmlBody)) {
        req.socket.destroy();
      } else {
        sendInjected(res, lost);
      }
      return;
    }
    res.json({ recipient_id: user.psid, message_id: mid });
    if (mode === "after") {
      res.once("finish", () => void options.onMessageSent(sent, { beforeAnswer: false }));
    }
  });

  // The Conversations API, narrowed to one person: `GET /{page-id}/conversations?user_id=<psid>&fields=…`.
  // https://developers.facebook.com/docs/messenger-platform/conversations
  router.get("/:version/:pageId/conversations", async (req, res) => {
    const psid = typeof req.query.user_id === "string" ? req.query.user_id : undefined;
    const auth = await authorise(req, res, "conversations", {
      pageId: String(req.params.pageId),
      ...(psid ? { psid } : {}),
      pageScoped: true,
    });
    if (!auth) return;
    const bad = (message: string) =>
      sendError(res, { status: 400, code: 100, type: "OAuthException", message });
    const platform = req.query.platform;
    if (platform !== undefined && platform !== "messenger") {
      return bad("(#100) Param platform must be one of {instagram, messenger}");
    }
    if (!psid) return bad("(#100) The fake Meta answers only for one person: pass user_id=<PSID>");
    const fields = typeof req.query.fields === "string" ? parseFields(req.query.fields) : [];
    const requested: typeof fields =
      fields.length > 0
        ? fields
        : [
            ["id", undefined],
            ["updated_time", undefined],
          ];
    const unknown =
      requested.find(([name]) => !CONVERSATION_FIELDS.has(name))?.[0] ??
      requested.flatMap(([, nested]) => nested ?? []).find((name) => !MESSAGE_FIELDS.has(name));
    if (unknown) return bad(`(#100) Tried accessing nonexisting field (${unknown})`);

    const page = state.page(auth.tokenPageId)!;
    const user = state.user(psid);
    // Another page's person, or nobody: Meta has no thread to show (PSIDs are page-scoped).
    const thread = user && user.pageId === page.pageId ? state.conversation(page.pageId, psid) : [];
    if (thread.length === 0) {
      res.json({ data: [] });
      return;
    }
    const pageParty = { name: page.name, email: `${page.pageId}@facebook.com`, id: page.pageId };
    const personParty = {
      name: `${user!.firstName} ${user!.lastName}`,
      email: `${psid}@facebook.com`,
      id: psid,
    };
    const messageValues = (m: ThreadMessage): Record<string, unknown> => ({
      id: m.mid,
      message: m.text,
      created_time: graphTime(m.at),
      from: m.from === "page" ? pageParty : personParty,
      to: { data: [m.from === "page" ? personParty : pageParty] },
    });
    const conversation: Record<string, unknown> = {};
    for (const [name, nested] of requested) {
      if (name === "id") conversation.id = threadId(page.pageId, psid);
      if (name === "updated_time") conversation.updated_time = graphTime(thread.at(-1)!.at);
      if (name === "messages") {
        const selected = nested && nested.length > 0 ? nested : ["id", "created_time"];
        conversation.messages = {
          // Newest first, as Meta lists them; Meta pages them (25 at a time), the fake answers the whole thread.
          data: [...thread].reverse().map((m) => {
            const values = messageValues(m);
            return Object.fromEntries([...new Set([...selected, "id"])].map((f) => [f, values[f]]));
          }),
        };
      }
    }
    // Meta always names the conversation's id.
    conversation.id ??= threadId(page.pageId, psid);
    res.json({ data: [conversation] });
  });

  router.get("/:version/:id", async (req, res) => {
    const psid = String(req.params.id);
    const user = state.user(psid);
    const auth = await authorise(req, res, "profile", { psid, pageId: user?.pageId, pageScoped: false });
    if (!auth) return;
    // PSIDs are page-scoped: another page's token cannot see this person.
    if (!user || user.pageId !== auth.tokenPageId) {
      sendError(res, {
        status: 400,
        code: 100,
        subcode: 33,
        type: "GraphMethodException",
        message: `Unsupported get request. Object with ID '${psid}' does not exist, cannot be loaded due to missing permissions, or does not support this operation.`,
      });
      return;
    }
    const requested =
      typeof req.query.fields === "string"
        ? req.query.fields.split(",").map((f) => f.trim())
        : ["name", "id"];
    const unknown = requested.find((f) => !PROFILE_FIELDS.has(f));
    if (unknown) {
      sendError(res, {
        status: 400,
        code: 100,
        type: "OAuthException",
        message: `(#100) Tried accessing nonexisting field (${unknown}) on node type (User)`,
      });
      return;
    }
    const values: Record<string, string> = {
      id: user.psid,
      name: `${user.firstName} ${user.lastName}`,
      first_name: user.firstName,
      last_name: user.lastName,
      profile_pic: user.profilePic,
    };
    res.json(Object.fromEntries([...new Set([...requested, "id"])].map((f) => [f, values[f]])));
  });

  return router;
}

function parseMaybeJson(value: unknown): unknown {
  if (typeof value !== "string") return value;
  try {
    return JSON.parse(value);
  } catch {
    return undefined;
  }
}
