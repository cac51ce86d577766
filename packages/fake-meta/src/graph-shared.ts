import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { Request, Response } from "express";
import {
  type FakeMetaState,
  type FakePage,
  type FakeUser,
  type GraphEndpointName,
  type GraphHost,
  hostOfPlatform,
  type InjectedError,
  type ThreadMessage,
} from "./state";

/**
 * What the Facebook host (`graph.ts`) and the Instagram host (`instagram.ts`) share: Meta's checks before an
 * edge runs, its error shapes, and the edges both hosts have (subscriptions, the Send API, conversations).
 */

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

/** Meta's timestamps in Graph answers: ISO 8601 with a `+0000` offset and no milliseconds. */
export const graphTime = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "+0000");

function fbtraceId(): string {
  return randomBytes(8).toString("base64url");
}

export function sendError(res: Response, error: MetaError): void {
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

/** Meta's `(#100)` answer for a bad parameter. */
export function sendBadParameter(res: Response, message: string, subcode?: number): void {
  sendError(res, { status: 400, code: 100, subcode, type: "OAuthException", message });
}

/** What a host answers for a token it cannot read: an unknown one, or the other host's. */
const UNPARSEABLE_TOKEN: MetaError = {
  status: 400,
  code: 190,
  type: "OAuthException",
  message: "Invalid OAuth access token - Cannot parse access token",
};

export function sendInjected(res: Response, injected: InjectedError): void {
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

/** Meta's answer for a path no edge serves (either host). */
export function sendUnknownPath(req: Request, res: Response): void {
  res.status(400).json({
    error: {
      message: `Unknown path components: ${req.path}`,
      type: "OAuthException",
      code: 2500,
      fbtrace_id: "fake",
    },
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

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function usageHeaders(res: Response, host: GraphHost, pageId: string | undefined, percent: number): void {
  const counts = { call_count: percent, total_cputime: percent, total_time: percent };
  res.set("X-App-Usage", JSON.stringify(counts));
  if (!pageId) return;
  res.set("X-Page-Usage", JSON.stringify(counts));
  const type = host === "instagram" ? "instagram" : "pages";
  res.set(
    "X-Business-Use-Case-Usage",
    JSON.stringify({
      [pageId]: [{ type, ...counts, estimated_time_to_regain_access: percent >= 100 ? 5 : 0 }],
    }),
  );
}

export function parseMaybeJson(value: unknown): unknown {
  if (typeof value !== "string") return value;
  try {
    return JSON.parse(value);
  } catch {
    return undefined;
  }
}

export interface AuthoriseOptions {
  state: FakeMetaState;
  appSecret: string;
  /** Recorded on each call; the accounts of the other host's platform are refused (190). */
  host: GraphHost;
  /** When set, other versions in the path are refused (catches a service ignoring GRAPH_API_VERSION). */
  graphApiVersion?: string;
  requireAppsecretProof?: boolean;
}

export interface AuthoriseTarget {
  pageId?: string;
  psid?: string;
  pageScoped: boolean;
  /** False for a path without a `/:version` segment (Instagram's `refresh_access_token`). */
  versioned?: boolean;
}

export interface Authorised {
  token: string;
  tokenPageId: string;
  /** The token's page (or Instagram account). */
  page: FakePage;
}

export type Authorise = (
  req: Request,
  res: Response,
  endpoint: GraphEndpointName,
  target: AuthoriseTarget,
) => Promise<Authorised | undefined>;

/**
 * The checks Meta makes before the edge runs: records the call, applies injected faults, then token
 * validity, appsecret_proof and that the token may act on `pageId`. Answers and returns undefined on failure.
 */
export function createAuthorise(options: AuthoriseOptions): Authorise {
  const { state, appSecret, host } = options;
  const requireProof = options.requireAppsecretProof ?? true;
  const otherHost = (pageId: string | undefined) => {
    const page = pageId ? state.page(pageId) : undefined;
    return page !== undefined && hostOfPlatform(page.platform) !== host;
  };

  return async (req, res, endpoint, target) => {
    const version = String(req.params.version);
    const token = tokenOf(req);
    const info = token ? state.tokenInfo(token) : undefined;
    // `me` resolves to the token's page, as at Meta; a profile call is filed under the person's page.
    const pageId = target.pageId === "me" ? info?.pageId : (target.pageId ?? info?.pageId);
    const appsecretProofValid = proofIsValid(token, proofOf(req), appSecret);
    state.recordCall({
      host,
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
    usageHeaders(res, host, pageId, state.usage(pageId));

    if (
      (target.versioned ?? true) &&
      (!/^v\d+\.\d+$/.test(version) || (options.graphApiVersion && version !== options.graphApiVersion))
    ) {
      sendError(res, {
        status: 400,
        code: 2500,
        type: "OAuthException",
        message: `Unknown path components: /${version}`,
      });
      return undefined;
    }
    // A Messenger page on the Instagram host, or an Instagram account on the Facebook host (by id or by
    // token): Meta cannot parse the other host's tokens. Before injected faults, so a call to the wrong host
    // fails loudly instead of with the fault a test meant for the right one.
    if (otherHost(pageId) || otherHost(info?.pageId)) {
      sendError(res, UNPARSEABLE_TOKEN);
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
      sendError(res, UNPARSEABLE_TOKEN);
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
    return { token, tokenPageId: info.pageId, page: state.page(info.pageId)! };
  };
}

/**
 * `GET/POST/DELETE /{id}/subscribed_apps` for the token's page: `app` is what GET names (with the fields),
 * `allowed` the fields POST accepts.
 */
export function handleSubscribedApps(
  req: Request,
  res: Response,
  state: FakeMetaState,
  page: FakePage,
  allowed: ReadonlySet<string>,
  app: Record<string, unknown>,
): void {
  if (req.method === "GET") {
    res.json({ data: page.subscribedFields ? [{ ...app, subscribed_fields: page.subscribedFields }] : [] });
    return;
  }
  if (req.method === "DELETE") {
    state.dropSubscription(page.pageId);
    res.json({ success: true });
    return;
  }
  if (req.method !== "POST") {
    sendError(res, { status: 400, code: 100, type: "GraphMethodException", message: "Unsupported request" });
    return;
  }
  const raw =
    req.query.subscribed_fields ?? (req.body as Record<string, unknown> | undefined)?.subscribed_fields;
  const fields = (Array.isArray(raw) ? raw.map(String) : typeof raw === "string" ? raw.split(",") : [])
    .map((f) => f.trim())
    .filter(Boolean);
  if (fields.length === 0) {
    sendBadParameter(res, "(#100) The parameter subscribed_fields is required");
    return;
  }
  const unknown = fields.find((f) => !allowed.has(f));
  if (unknown) {
    sendBadParameter(
      res,
      `(#100) Param subscribed_fields[${fields.indexOf(unknown)}] must be one of {${[...allowed].join(", ")}} - got "${unknown}".`,
    );
    return;
  }
  state.subscribe(page.pageId, fields);
  res.json({ success: true });
}

const MESSAGING_TYPES = new Set(["RESPONSE", "UPDATE", "MESSAGE_TAG"]);

/** How a host's Send API validates a body (beyond what both hosts check). */
export interface SendRules {
  /** Messenger requires `messaging_type`; Instagram only checks it when given. */
  messagingTypeRequired: boolean;
  /** An error message when the text is too long. */
  textTooLong(text: string): string | undefined;
  /** An error message when the attachment is not one this host sends. */
  badAttachment?(attachment: Record<string, unknown>): string | undefined;
  /** The `error_subcode` of "No matching user found". */
  unknownRecipientSubcode: number;
}

/**
 * Conversation routing: while another app (Meta's inbox, say) controls the person's thread, Meta refuses
 * this app's sends with code 10, subcode 2018300.
 */
const THREAD_OWNED_ELSEWHERE: MetaError = {
  status: 400,
  code: 10,
  subcode: 2018300,
  type: "OAuthException",
  message: "(#10) Another app is controlling this thread now.",
};

export interface SendRequest {
  user: FakeUser;
  recipient: { id: string };
  message: Record<string, unknown>;
}

/** The Send API body's recipient and message, or undefined once Meta's `(#100)` answer is sent. */
export function readSendRequest(
  res: Response,
  state: FakeMetaState,
  auth: Authorised,
  body: Record<string, unknown>,
  rules: SendRules,
  /** This host's app: a thread it controls (or nobody does) takes its sends. */
  ownAppId: string,
): SendRequest | undefined {
  const bad = (message: string, subcode?: number) => {
    sendBadParameter(res, message, subcode);
    return undefined;
  };
  const recipient = parseMaybeJson(body.recipient) as { id?: unknown } | undefined;
  const message = parseMaybeJson(body.message) as Record<string, unknown> | undefined;
  if (!recipient || typeof recipient.id !== "string" || recipient.id === "") {
    return bad("(#100) The parameter recipient is required");
  }
  const messagingType = body.messaging_type;
  if (
    (rules.messagingTypeRequired || messagingType !== undefined) &&
    (typeof messagingType !== "string" || !MESSAGING_TYPES.has(messagingType))
  ) {
    return bad("(#100) Param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}");
  }
  if (messagingType === "MESSAGE_TAG" && typeof body.tag !== "string") {
    return bad("(#100) Param tag is required with messaging_type MESSAGE_TAG");
  }
  if (!message || typeof message !== "object") return bad("(#100) The parameter message is required");
  const hasText = typeof message.text === "string" && message.text !== "";
  const hasAttachment = typeof message.attachment === "object" && message.attachment !== null;
  if (hasText === hasAttachment) return bad("(#100) Param message must contain either text or attachment");
  const problem = hasText
    ? rules.textTooLong(message.text as string)
    : rules.badAttachment?.(message.attachment as Record<string, unknown>);
  if (problem) return bad(problem);
  const user = state.user(recipient.id);
  if (!user || user.pageId !== auth.tokenPageId) {
    return bad("(#100) No matching user found", rules.unknownRecipientSubcode);
  }
  const owner = state.threadOwner(auth.tokenPageId, user.psid);
  if (owner !== undefined && owner !== null && owner !== ownAppId) {
    sendError(res, THREAD_OWNED_ELSEWHERE);
    return undefined;
  }
  return { user, recipient: { ...recipient, id: recipient.id }, message };
}

export interface SentInput {
  pageId: string;
  psid: string;
  mid: string;
  body: Record<string, unknown>;
}

/** Sends the echo webhook; `beforeAnswer` says whether the Send API's answer waits for it. */
export type OnMessageSent = (sent: SentInput, phase: { beforeAnswer: boolean }) => Promise<void>;

/**
 * The Send API's work once the body is valid: the message is sent (recorded, in the thread), the echo goes
 * out before or after the answer (the echo mode), and an `afterSending` fault loses the answer.
 */
export async function completeSend(
  req: Request,
  res: Response,
  state: FakeMetaState,
  sent: SentInput,
  onMessageSent: OnMessageSent,
): Promise<void> {
  state.recordSentMessage({ ...sent, at: Date.now() });
  const mode =
    state.echoMode === "random" ? (Math.random() < 0.5 ? "before" : "after") : (state.echoMode as string);
  if (mode === "before") await onMessageSent(sent, { beforeAnswer: true });
  const lost = res.locals.afterSending as InjectedError | undefined;
  if (lost) {
    // Sent, but the caller never learns it: a timeout, a 5xx from a proxy, a dropped connection.
    if (mode === "after") void onMessageSent(sent, { beforeAnswer: false });
    if (lost.delayMs) await sleep(lost.delayMs);
    if (lost.dropConnection || (lost.code === undefined && lost.status === undefined && !lost.htmlBody)) {
      req.socket.destroy();
    } else {
      sendInjected(res, lost);
    }
    return;
  }
  res.json({ recipient_id: sent.psid, message_id: sent.mid });
  if (mode === "after") {
    res.once("finish", () => void onMessageSent(sent, { beforeAnswer: false }));
  }
}

/**
 * The fields a node read asks for (`?fields=a,b`, else `defaults`), or undefined once Meta's `(#100)` answer
 * for a field the node does not have is sent.
 */
export function requestedFields(
  req: Request,
  res: Response,
  allowed: ReadonlySet<string>,
  defaults: string[],
  nodeType: string,
): string[] | undefined {
  const requested =
    typeof req.query.fields === "string" ? req.query.fields.split(",").map((f) => f.trim()) : defaults;
  const unknown = requested.find((f) => !allowed.has(f));
  if (unknown === undefined) return requested;
  sendBadParameter(res, `(#100) Tried accessing nonexisting field (${unknown}) on node type (${nodeType})`);
  return undefined;
}

/** The requested values, and `id`, which Meta always names. */
export function pickFields(values: Record<string, unknown>, requested: string[]): Record<string, unknown> {
  return Object.fromEntries([...new Set([...requested, "id"])].map((f) => [f, values[f]]));
}

/** Meta's answer for an id the token cannot see (another page's person, or nobody). */
export function sendUnknownObject(res: Response, id: string): void {
  sendError(res, {
    status: 400,
    code: 100,
    subcode: 33,
    type: "GraphMethodException",
    message: `Unsupported get request. Object with ID '${id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation.`,
  });
}

const CONVERSATION_FIELDS = new Set(["id", "updated_time", "messages"]);
const MESSAGE_FIELDS = new Set(["id", "message", "created_time", "from", "to"]);

/** How a host names a thread and its two sides in Conversations API answers. */
export interface ConversationShape {
  threadId(pageId: string, psid: string): string;
  page(page: FakePage): Record<string, unknown>;
  person(user: FakeUser): Record<string, unknown>;
}

/**
 * The Conversations API narrowed to one person (`?user_id=` and `fields=`) for the token's page, once the
 * host has checked `platform`.
 */
export function answerConversation(
  req: Request,
  res: Response,
  state: FakeMetaState,
  page: FakePage,
  shape: ConversationShape,
): void {
  const psid = typeof req.query.user_id === "string" ? req.query.user_id : undefined;
  if (!psid) {
    sendBadParameter(res, "(#100) The fake Meta answers only for one person: pass user_id=<PSID>");
    return;
  }
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
  if (unknown) {
    sendBadParameter(res, `(#100) Tried accessing nonexisting field (${unknown})`);
    return;
  }

  const user = state.user(psid);
  // Another page's person, or nobody: Meta has no thread to show (PSIDs are page-scoped).
  const thread = user && user.pageId === page.pageId ? state.conversation(page.pageId, psid) : [];
  if (!user || thread.length === 0) {
    res.json({ data: [] });
    return;
  }
  const pageParty = shape.page(page);
  const personParty = shape.person(user);
  const messageValues = (m: ThreadMessage): Record<string, unknown> => ({
    id: m.mid,
    message: m.text,
    created_time: graphTime(m.at),
    from: m.from === "page" ? pageParty : personParty,
    to: { data: [m.from === "page" ? personParty : pageParty] },
  });
  const id = shape.threadId(page.pageId, psid);
  const conversation: Record<string, unknown> = {};
  for (const [name, nested] of requested) {
    if (name === "id") conversation.id = id;
    if (name === "updated_time") conversation.updated_time = graphTime(thread.at(-1)!.at);
    if (name === "messages") {
      const selected = nested && nested.length > 0 ? nested : ["id", "created_time"];
      conversation.messages = {
        // Newest first, as Meta lists them; Meta pages them (25 at a time), the fake answers the whole thread.
        data: [...thread].reverse().map((m) => pickFields(messageValues(m), selected)),
      };
    }
  }
  // Meta always names the conversation's id.
  conversation.id ??= id;
  res.json({ data: [conversation] });
}
