import { createHmac } from "node:crypto";
import { type Platform, quoteLongIds } from "@switchboard/contracts";
import { z } from "zod";
import {
  classifyGraphError,
  createGraphError,
  type GraphApiError,
  type GraphErrorKind,
  TransientGraphError,
  UnknownGraphError,
} from "./errors";
import type {
  RefreshedToken,
  SendMessageBody,
  SendMessageResult,
  SubscribedApp,
  ThreadMessage,
  UserProfile,
} from "./messages";
import { type GraphUsage, parseUsage } from "./usage";

export interface GraphClientOptions {
  /**
   * `messenger` (default): Facebook Pages on graph.facebook.com. `instagram`: Instagram accounts on the
   * Instagram API with Instagram Login (graph.instagram.com): other profile fields, `platform=instagram`
   * on conversations, and token refresh.
   */
  platform?: Platform;
  /** e.g. https://graph.facebook.com (GRAPH_API_BASE_URL) or https://graph.instagram.com (INSTAGRAM_API_BASE_URL) */
  baseUrl: string;
  /** e.g. v21.0 (GRAPH_API_VERSION) */
  version: string;
  appSecret: string;
  /** Per attempt, including reading the body. Default 10 s. */
  timeoutMs?: number;
  /** Extra attempts after a transient failure. Default 2. */
  maxRetries?: number;
  /** First backoff step; each retry doubles it (with jitter). Default 250 ms. */
  retryBaseDelayMs?: number;
  fetch?: typeof fetch;
  /** Called after every HTTP attempt (retries included), for metrics and logs. Never sees a token. */
  onCall?: (call: GraphCallRecord) => void;
}

export interface GraphCallRecord {
  /** `<edge>:<METHOD>` without ids, e.g. "subscribed_apps:POST", "profile:GET", "messages:POST". */
  endpoint: string;
  pageId?: string;
  outcome: "ok" | GraphErrorKind;
  /** HTTP status; 0 when no answer came (network error, timeout). */
  status: number;
  durationMs: number;
  usage: GraphUsage;
}

export interface GraphClient {
  /** `POST /{page-id}/subscribed_apps?subscribed_fields=…` with that page's own token. */
  subscribeApp(pageId: string, token: string, fields: string[]): Promise<{ success: boolean }>;
  getSubscribedApps(pageId: string, token: string): Promise<SubscribedApp[]>;
  unsubscribeApp(pageId: string, token: string): Promise<{ success: boolean }>;
  /** `GET /{psid}?fields=first_name,last_name,profile_pic`; `context.pageId` only labels the call record. */
  getUserProfile(psid: string, token: string, context?: { pageId?: string }): Promise<UserProfile>;
  /**
   * `POST /{page-id}/messages`. A transient failure after which Meta may already have delivered the
   * message (timeout, dropped connection) is not retried here: the caller decides, knowing the echo may come.
   */
  sendMessage(pageId: string, token: string, body: SendMessageBody): Promise<SendMessageResult>;
  /**
   * The latest messages of the page's thread with one person, newest first:
   * `GET /{page-id}/conversations?user_id=<psid>&fields=messages.limit(n){id,message,created_time,from}`.
   * How a sender finds out whether a Send API call whose answer was lost went out.
   */
  getThreadMessages(pageId: string, token: string, psid: string, limit?: number): Promise<ThreadMessage[]>;
  /**
   * Instagram only: `GET /refresh_access_token?grant_type=ig_refresh_token` (no version), a new long-lived
   * token valid 60 days. Meta refuses tokens under 24 hours old and expired ones.
   */
  refreshInstagramToken(token: string, context?: { pageId?: string }): Promise<RefreshedToken>;
}

/** One client per platform, each with its own host and app secret. */
export type GraphClients = Record<Platform, GraphClient>;

/** `appsecret_proof`: hex HMAC-SHA256 of the access token keyed by the app secret. */
export function appSecretProof(token: string, appSecret: string): string {
  return createHmac("sha256", appSecret).update(token).digest("hex");
}

interface GraphRequest {
  endpoint: string;
  method: "GET" | "POST" | "DELETE";
  path: string;
  token: string;
  pageId?: string;
  query?: Record<string, string>;
  body?: unknown;
  /** Whether a retry is safe even when Meta may have applied the first attempt. */
  idempotent: boolean;
  /** Outside the versioned root (Instagram's `/refresh_access_token`). */
  unversioned?: boolean;
}

const GraphErrorBody = z.object({
  error: z.object({
    message: z.string().optional(),
    type: z.string().optional(),
    code: z.coerce.number().optional(),
    error_subcode: z.coerce.number().optional(),
    is_transient: z.boolean().optional(),
    fbtrace_id: z.string().optional(),
  }),
});

const SubscribedAppsResponse = z.object({
  data: z.array(
    z.looseObject({
      id: z.string(),
      name: z.string().optional(),
      subscribed_fields: z.array(z.string()).default([]),
    }),
  ),
});
const SuccessResponse = z.looseObject({ success: z.boolean() });
// Ids as strings even when a host answers a number: the message went out, a parse error must not say otherwise.
const SendResponse = z.looseObject({ recipient_id: z.coerce.string(), message_id: z.coerce.string() });
const ThreadResponse = z.looseObject({
  data: z.array(
    z.looseObject({
      messages: z
        .looseObject({
          data: z.array(
            z.looseObject({
              id: z.coerce.string(),
              message: z.string().optional(),
              created_time: z.string(),
              from: z.looseObject({ id: z.coerce.string() }).optional(),
            }),
          ),
        })
        .optional(),
    }),
  ),
});
const ProfileResponse = z.looseObject({
  first_name: z.string().optional(),
  last_name: z.string().optional(),
  name: z.string().optional(),
  username: z.string().optional(),
  profile_pic: z.string().optional(),
});
const RefreshResponse = z.looseObject({ access_token: z.string().min(1), expires_in: z.coerce.number() });

/** What each platform's profile lookup asks for (Instagram users have a name and username, no first/last). */
const PROFILE_FIELDS: Record<Platform, string> = {
  messenger: "first_name,last_name,profile_pic",
  instagram: "name,username,profile_pic",
};

// Connection failures where the request certainly never reached Meta.
const NEVER_SENT_CODES = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "ENETUNREACH", "EHOSTUNREACH"]);

function explicitPageId(pageId: string): string {
  // `/me/...` with a page token resolves to whichever page the token belongs to: the seed's bug.
  if (!pageId || pageId === "me") throw new Error("an explicit page id is required (never /me)");
  return encodeURIComponent(pageId);
}

function errorCode(error: unknown): string | undefined {
  const cause = (error as { cause?: { code?: unknown } })?.cause;
  return typeof cause?.code === "string" ? cause.code : undefined;
}

export function createGraphClient(options: GraphClientOptions): GraphClient {
  const {
    appSecret,
    timeoutMs = 10_000,
    maxRetries = 2,
    retryBaseDelayMs = 250,
    fetch: fetchImpl = globalThis.fetch,
    onCall,
  } = options;
  const platform = options.platform ?? "messenger";
  const host = options.baseUrl.replace(/\/+$/, "");
  const root = `${host}/${options.version}`;

  async function attempt(request: GraphRequest): Promise<unknown> {
    const proof = appSecretProof(request.token, appSecret);
    // Meta's messages are quoted in errors; make sure no secret ever rides along.
    const redact = (text: string) =>
      (request.token ? text.replaceAll(request.token, "[token]") : text).replaceAll(proof, "[proof]");
    const url = new URL(`${request.unversioned ? host : root}${request.path}`);
    for (const [key, value] of Object.entries(request.query ?? {})) url.searchParams.set(key, value);
    url.searchParams.set("appsecret_proof", proof);

    const started = performance.now();
    const record = (outcome: GraphCallRecord["outcome"], status: number, usage: GraphUsage) => {
      try {
        onCall?.({
          endpoint: request.endpoint,
          ...(request.pageId ? { pageId: request.pageId } : {}),
          outcome,
          status,
          durationMs: performance.now() - started,
          usage,
        });
      } catch {
        // A failing metrics hook must not turn a good Graph answer into an error.
      }
    };

    let response: Response;
    let text: string;
    try {
      response = await fetchImpl(url, {
        method: request.method,
        headers: {
          authorization: `Bearer ${request.token}`,
          accept: "application/json",
          ...(request.body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: request.body === undefined ? undefined : JSON.stringify(request.body),
        signal: AbortSignal.timeout(timeoutMs),
      });
      text = await response.text();
    } catch (error) {
      const timedOut = (error as Error)?.name === "TimeoutError";
      const code = errorCode(error);
      record("transient", 0, {});
      // No `cause`: the underlying fetch error may quote the URL, which carries the proof.
      throw new TransientGraphError({
        message: timedOut
          ? `${request.endpoint}: no answer within ${timeoutMs} ms`
          : redact(`${request.endpoint}: network error (${code ?? (error as Error)?.name ?? "unknown"})`),
        endpoint: request.endpoint,
        status: 0,
        requestMayHaveApplied: !(code && NEVER_SENT_CODES.has(code)),
      });
    }

    const usage = parseUsage(response.headers);
    let json: unknown;
    try {
      // Ids above 2^53 (app ids, Instagram ids) stay exact.
      json = text === "" ? undefined : JSON.parse(quoteLongIds(text));
    } catch {
      json = undefined;
    }
    const graphError = GraphErrorBody.safeParse(json);
    if (response.ok && json !== undefined && !graphError.success) {
      record("ok", response.status, usage);
      return json;
    }

    const details = graphError.success ? graphError.data.error : undefined;
    const kind = classifyGraphError({
      status: response.status,
      code: details?.code,
      subcode: details?.error_subcode,
      isTransient: details?.is_transient,
    });
    record(kind, response.status, usage);
    const metaMessage = details?.message ?? (response.ok ? "unreadable response" : `HTTP ${response.status}`);
    const codes = [
      details?.code !== undefined ? `code ${details.code}` : undefined,
      details?.error_subcode !== undefined ? `subcode ${details.error_subcode}` : undefined,
      `HTTP ${response.status}`,
    ].filter(Boolean);
    throw createGraphError(kind, {
      message: redact(`${request.endpoint}: ${metaMessage} (${codes.join(", ")})`),
      endpoint: request.endpoint,
      status: response.status,
      code: details?.code,
      subcode: details?.error_subcode,
      type: details?.type,
      fbtraceId: details?.fbtrace_id,
      usage,
      // A 5xx from something in front of Meta says nothing about whether Meta acted.
      requestMayHaveApplied: details?.code === undefined,
    });
  }

  async function call(request: GraphRequest): Promise<unknown> {
    for (let attemptNumber = 0; ; attemptNumber++) {
      try {
        return await attempt(request);
      } catch (error) {
        const retry =
          error instanceof TransientGraphError &&
          attemptNumber < maxRetries &&
          (request.idempotent || !error.requestMayHaveApplied);
        if (!retry) throw error;
        // Exponential backoff with jitter: half fixed, half random, so replicas do not retry in step.
        const step = retryBaseDelayMs * 2 ** attemptNumber;
        await new Promise((resolve) => setTimeout(resolve, step / 2 + Math.random() * (step / 2)));
      }
    }
  }

  function parse<T>(request: GraphRequest, schema: z.ZodType<T>, value: unknown): T {
    const result = schema.safeParse(value);
    if (result.success) return result.data;
    throw new UnknownGraphError({
      message: `${request.endpoint}: unexpected response shape`,
      endpoint: request.endpoint,
      status: 200,
    }) satisfies GraphApiError;
  }

  async function run<T>(request: GraphRequest, schema: z.ZodType<T>): Promise<T> {
    return parse(request, schema, await call(request));
  }

  return {
    async subscribeApp(pageId, token, fields) {
      const request: GraphRequest = {
        endpoint: "subscribed_apps:POST",
        method: "POST",
        path: `/${explicitPageId(pageId)}/subscribed_apps`,
        token,
        pageId,
        query: { subscribed_fields: fields.join(",") },
        idempotent: true,
      };
      const result = await run(request, SuccessResponse);
      return { success: result.success };
    },
    async getSubscribedApps(pageId, token) {
      const request: GraphRequest = {
        endpoint: "subscribed_apps:GET",
        method: "GET",
        path: `/${explicitPageId(pageId)}/subscribed_apps`,
        token,
        pageId,
        idempotent: true,
      };
      const result = await run(request, SubscribedAppsResponse);
      return result.data.map(({ id, name, subscribed_fields }) => ({
        id,
        ...(name === undefined ? {} : { name }),
        subscribed_fields,
      }));
    },
    async unsubscribeApp(pageId, token) {
      const request: GraphRequest = {
        endpoint: "subscribed_apps:DELETE",
        method: "DELETE",
        path: `/${explicitPageId(pageId)}/subscribed_apps`,
        token,
        pageId,
        idempotent: true,
      };
      const result = await run(request, SuccessResponse);
      return { success: result.success };
    },
    async getUserProfile(psid, token, context) {
      const request: GraphRequest = {
        endpoint: "profile:GET",
        method: "GET",
        path: `/${encodeURIComponent(psid)}`,
        token,
        ...(context?.pageId ? { pageId: context.pageId } : {}),
        query: { fields: PROFILE_FIELDS[platform] },
        idempotent: true,
      };
      const { first_name, last_name, name, username, profile_pic } = await run(request, ProfileResponse);
      return {
        ...(first_name === undefined ? {} : { first_name }),
        ...(last_name === undefined ? {} : { last_name }),
        ...(name === undefined ? {} : { name }),
        ...(username === undefined ? {} : { username }),
        ...(profile_pic === undefined ? {} : { profile_pic }),
      };
    },
    async sendMessage(pageId, token, body) {
      const request: GraphRequest = {
        endpoint: "messages:POST",
        method: "POST",
        path: `/${explicitPageId(pageId)}/messages`,
        token,
        pageId,
        body,
        idempotent: false,
      };
      const { recipient_id, message_id } = await run(request, SendResponse);
      return { recipient_id, message_id };
    },
    async getThreadMessages(pageId, token, psid, limit = 25) {
      const request: GraphRequest = {
        endpoint: "conversations:GET",
        method: "GET",
        path: `/${explicitPageId(pageId)}/conversations`,
        token,
        pageId,
        query: {
          user_id: psid,
          fields: `messages.limit(${limit}){id,message,created_time,from}`,
          ...(platform === "instagram" ? { platform: "instagram" } : {}),
        },
        idempotent: true,
      };
      const result = await run(request, ThreadResponse);
      return result.data.flatMap((thread) =>
        (thread.messages?.data ?? []).map(({ id, message, created_time, from }) => ({
          id,
          created_time,
          ...(message === undefined ? {} : { message }),
          ...(from === undefined ? {} : { from: { id: from.id } }),
        })),
      );
    },
    async refreshInstagramToken(token, context) {
      if (platform !== "instagram") throw new Error("token refresh is an Instagram API call");
      const request: GraphRequest = {
        endpoint: "refresh_access_token:GET",
        method: "GET",
        path: "/refresh_access_token",
        token,
        ...(context?.pageId ? { pageId: context.pageId } : {}),
        query: { grant_type: "ig_refresh_token", access_token: token },
        idempotent: true,
        unversioned: true,
      };
      const { access_token, expires_in } = await run(request, RefreshResponse);
      return { access_token, expires_in };
    },
  };
}

/** Where one platform's calls go and which app secret proves them (`graphHostsOf` in @switchboard/config). */
export interface GraphHostSettings {
  baseUrl: string;
  version: string;
  appSecret: string;
}

/** A client per platform, sharing the rest of the options (timeouts, retries, the metrics hook). */
export function createGraphClients(
  hosts: Record<Platform, GraphHostSettings>,
  options: Omit<GraphClientOptions, "platform" | "baseUrl" | "version" | "appSecret"> = {},
): GraphClients {
  return {
    messenger: createGraphClient({ ...options, ...hosts.messenger, platform: "messenger" }),
    instagram: createGraphClient({ ...options, ...hosts.instagram, platform: "instagram" }),
  };
}
