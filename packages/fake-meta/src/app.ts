import { randomBytes, timingSafeEqual } from "node:crypto";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import express, { type Express, type NextFunction, type Request, type Response } from "express";
import type { Logger } from "pino";
import { createGraphRouter } from "./graph";
import { type SentInput, sendUnknownPath } from "./graph-shared";
import { createInstagramRouter, INSTAGRAM_API_PATH } from "./instagram";
import { type EchoMode, FakeMetaState, type FakePlatform, type GraphEndpointName } from "./state";
import { persistState } from "./state-file";
import {
  type DeliveryResult,
  deliverSignedWebhook,
  RawNumber,
  type WebhookEntryInput,
  webhookBodyFor,
} from "./webhooks";

export interface FakeMetaOptions {
  appSecret: string;
  appId: string;
  /** The Instagram app's id, named by the Instagram host's `GET subscribed_apps`; `appId` when omitted. */
  instagramAppId?: string;
  /** Where webhooks (and Send API echoes) are POSTed, e.g. http://127.0.0.1:3000/webhooks/facebook */
  ingressUrl: string;
  /** Refuse other Graph API versions in the path (both hosts); any `vX.Y` when omitted. */
  graphApiVersion?: string;
  echoMode?: EchoMode;
  /**
   * The bearer token the control API (`/_fake/*`) requires: it signs any payload with the app secret and
   * hands out page tokens. A random one when omitted (read it back from `controlToken`).
   */
  controlToken?: string;
  /** Keep the registrations (pages, tokens, people, subscriptions) in this JSON file across restarts. */
  stateFile?: string;
  log?: Logger;
}

export interface SendWebhookOptions {
  ingressUrl?: string;
  /** The body's `object` when a list of entries is given: "page" (Messenger, the default) or "instagram". */
  object?: string;
  /** Sign with this secret instead of the app secret. */
  signWith?: string;
  badSignature?: boolean;
}

export interface RunningFakeMeta {
  /** Base URL, e.g. http://127.0.0.1:43121 — use it as GRAPH_API_BASE_URL. */
  url: string;
  /** `url` + `/instagram-api` — use it as INSTAGRAM_API_BASE_URL. */
  instagramUrl: string;
  close(): Promise<void>;
}

export interface FakeMeta {
  app: Express;
  state: FakeMetaState;
  /** What `/_fake/*` requests must send as `Authorization: Bearer <controlToken>`. */
  controlToken: string;
  /** Writes pending registration changes to the state file now (no-op without one). */
  flushState(): void;
  listen(port?: number, host?: string): Promise<RunningFakeMeta>;
  /**
   * Signs and POSTs a webhook: a whole body (object or exact string, sent as is) or a list of entries (an
   * `object: "page"` body, or `options.object`'s).
   */
  sendWebhook(body: unknown, options?: SendWebhookOptions): Promise<DeliveryResult>;
}

export function createFakeMeta(options: FakeMetaOptions): FakeMeta {
  const { appSecret, appId, ingressUrl, log } = options;
  const instagramAppId = options.instagramAppId ?? appId;
  const state = new FakeMetaState(options.echoMode);
  const controlToken = options.controlToken ?? randomBytes(24).toString("base64url");
  const persistence = options.stateFile ? persistState(state, options.stateFile) : undefined;

  async function sendWebhook(body: unknown, sendOptions: SendWebhookOptions = {}): Promise<DeliveryResult> {
    const url = sendOptions.ingressUrl ?? ingressUrl;
    const payload = Array.isArray(body)
      ? webhookBodyFor(body as WebhookEntryInput[], sendOptions.object ?? "page")
      : body;
    const at = Date.now();
    recordPersonMessages(state, payload, at);
    try {
      const result = await deliverSignedWebhook({
        url,
        appSecret: sendOptions.signWith ?? appSecret,
        body: payload,
        badSignature: sendOptions.badSignature ?? false,
      });
      state.recordDelivery({ url, body: result.sentBody, status: result.status, at });
      log?.info({ url, status: result.status }, "webhook delivered");
      return result;
    } catch (error) {
      const message = (error as Error).message;
      state.recordDelivery({
        url,
        body: typeof payload === "string" ? payload : JSON.stringify(payload),
        error: message,
        at,
      });
      log?.warn({ url, err: message }, "webhook delivery failed");
      throw error;
    }
  }

  /** The echo Meta sends for a message a page sent: sender = page, `app_id` = the sending app, our metadata. */
  async function sendEcho(sent: SentInput) {
    const message = sent.body.message as Record<string, unknown>;
    const now = Date.now();
    const echo = {
      sender: { id: sent.pageId },
      recipient: { id: sent.psid },
      timestamp: now,
      message: {
        is_echo: true,
        app_id: new RawNumber(appId),
        ...(typeof message.metadata === "string" ? { metadata: message.metadata } : {}),
        mid: sent.mid,
        ...echoContent(message),
      },
    };
    await sendEchoWebhook([{ id: sent.pageId, time: now, messaging: [echo] }], "page");
  }

  /** Instagram's echo: sender = the account, and neither `app_id` nor `metadata` (Instagram echoes neither). */
  async function sendInstagramEcho(sent: SentInput) {
    const now = Date.now();
    const echo = {
      sender: { id: sent.pageId },
      recipient: { id: sent.psid },
      timestamp: now,
      message: { mid: sent.mid, ...echoContent(sent.body.message as Record<string, unknown>), is_echo: true },
    };
    await sendEchoWebhook([{ id: sent.pageId, time: now, messaging: [echo] }], "instagram");
  }

  async function sendEchoWebhook(entries: WebhookEntryInput[], object: string) {
    try {
      await sendWebhook(entries, { object });
    } catch {
      // Recorded in state.webhookDeliveries; Meta would retry later, the fake does not.
    }
  }

  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  app.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });
  app.use(
    "/_fake",
    requireControlToken(controlToken),
    createControlRouter(state, sendWebhook, { messenger: appId, instagram: instagramAppId }),
  );
  // Before the Facebook routes, whose `/:version/:id` would otherwise take `/instagram-api/…` paths.
  app.use(
    INSTAGRAM_API_PATH,
    createInstagramRouter({
      state,
      appSecret,
      instagramAppId,
      ...(options.graphApiVersion ? { graphApiVersion: options.graphApiVersion } : {}),
      onMessageSent: (sent) => sendInstagramEcho(sent),
    }),
  );
  app.use(
    createGraphRouter({
      state,
      appSecret,
      appId,
      ...(options.graphApiVersion ? { graphApiVersion: options.graphApiVersion } : {}),
      onMessageSent: (sent) => sendEcho(sent),
    }),
  );
  app.use(sendUnknownPath);

  return {
    app,
    state,
    controlToken,
    flushState: () => persistence?.flush(),
    sendWebhook,
    listen(port = 0, host = "127.0.0.1") {
      return new Promise((resolve, reject) => {
        const server: Server = app.listen(port, host, (error?: Error) => {
          if (error) return reject(error);
          const address = server.address() as AddressInfo;
          const url = `http://${host}:${address.port}`;
          resolve({
            url,
            instagramUrl: `${url}${INSTAGRAM_API_PATH}`,
            close: () =>
              new Promise<void>((done) => {
                persistence?.flush();
                server.close(() => done());
                server.closeAllConnections();
              }),
          });
        });
      });
    },
  };
}

/** What an echo repeats of the message sent: its text or its attachment. */
function echoContent(message: Record<string, unknown>): Record<string, unknown> {
  const attachment = message.attachment as { type?: string; payload?: unknown } | undefined;
  return {
    ...(typeof message.text === "string" ? { text: message.text } : {}),
    ...(attachment ? { attachments: [{ type: attachment.type, payload: attachment.payload }] } : {}),
  };
}

/**
 * The messages people wrote in a webhook the fake sends (not echoes): the person's side of the page's (or
 * Instagram account's: same `entry[].messaging[]` shape) thread, which the Conversations API shows. Bodies
 * that are not Meta-shaped (a test's raw string) add nothing.
 */
function recordPersonMessages(state: FakeMetaState, payload: unknown, at: number): void {
  let body = payload;
  if (typeof body === "string") {
    try {
      body = JSON.parse(body);
    } catch {
      return;
    }
  }
  const entries = (body as { entry?: unknown } | null)?.entry;
  if (!Array.isArray(entries)) return;
  for (const entry of entries as Array<{ id?: unknown; messaging?: unknown }>) {
    if (!Array.isArray(entry?.messaging)) continue;
    for (const item of entry.messaging as Array<Record<string, unknown>>) {
      const psid = (item.sender as { id?: unknown } | undefined)?.id;
      const message = item.message as { mid?: unknown; text?: unknown; is_echo?: unknown } | undefined;
      if (typeof psid !== "string" || typeof message?.mid !== "string" || message.is_echo) continue;
      state.recordPersonMessage({
        pageId: String(entry.id),
        psid,
        mid: message.mid,
        ...(typeof message.text === "string" ? { text: message.text } : {}),
        at,
      });
    }
  }
}

/** The control API signs anything with the app secret and hands out page tokens: never open to anyone. */
function requireControlToken(controlToken: string) {
  const expected = Buffer.from(controlToken);
  return (req: Request, res: Response, next: NextFunction) => {
    const presented = Buffer.from(/^Bearer\s+(.+)$/i.exec(req.get("authorization") ?? "")?.[1] ?? "");
    if (presented.length === expected.length && timingSafeEqual(presented, expected)) return next();
    res
      .status(401)
      .set("WWW-Authenticate", 'Bearer realm="fake-meta control API"')
      .json({ error: "the control API needs Authorization: Bearer <FAKE_META_CONTROL_TOKEN>" });
  };
}

const PLATFORMS: readonly unknown[] = ["messenger", "instagram"] satisfies FakePlatform[];

/** `/_fake/...`: drive the fake over HTTP from a shell or an end-to-end test. */
function createControlRouter(
  state: FakeMetaState,
  sendWebhook: (body: unknown, options?: SendWebhookOptions) => Promise<DeliveryResult>,
  ownAppIds: Record<FakePlatform, string>,
) {
  const router = express.Router();
  router.use(express.json({ limit: "10mb" }));
  const handle =
    (fn: (req: Request, res: Response) => unknown | Promise<unknown>) =>
    async (req: Request, res: Response) => {
      try {
        await fn(req, res);
      } catch (error) {
        res.status(400).json({ error: (error as Error).message });
      }
    };
  const pageId = (req: Request) => String(req.params.pageId);

  router.post(
    "/pages",
    handle((req, res) => {
      const { pageId: id, token, name, platform, username } = req.body ?? {};
      if (typeof id !== "string" || typeof token !== "string")
        throw new Error("pageId and token are required");
      if (platform !== undefined && !PLATFORMS.includes(platform))
        throw new Error("platform: messenger|instagram");
      res.status(201).json(
        state.addPage({
          pageId: id,
          token,
          ...(typeof name === "string" ? { name } : {}),
          ...(platform ? { platform: platform as FakePlatform } : {}),
          ...(typeof username === "string" ? { username } : {}),
        }),
      );
    }),
  );
  router.get("/pages", (_req, res) => {
    res.json(state.listPages());
  });
  router.post(
    "/pages/:pageId/revoke",
    handle((req, res) => {
      state.revokeToken(pageId(req));
      res.json({ ok: true });
    }),
  );
  router.post(
    "/pages/:pageId/token",
    handle((req, res) => {
      if (typeof req.body?.token !== "string") throw new Error("token is required");
      state.setToken(pageId(req), req.body.token);
      res.json({ ok: true });
    }),
  );
  router.post(
    "/pages/:pageId/drop-subscription",
    handle((req, res) => {
      state.dropSubscription(pageId(req));
      res.json({ ok: true });
    }),
  );
  router.get("/pages/:pageId/subscription", (req, res) => {
    const fields = state.subscriptions(pageId(req));
    res.json({ pageId: pageId(req), subscribed: fields !== undefined, fields: fields ?? [] });
  });
  router.post(
    "/pages/:pageId/errors",
    handle((req, res) => {
      state.injectError(pageId(req), req.body ?? {});
      res.status(201).json({ ok: true });
    }),
  );
  router.delete("/pages/:pageId/errors", (req, res) => {
    state.clearErrors(pageId(req));
    res.json({ ok: true });
  });
  router.post(
    "/pages/:pageId/usage",
    handle((req, res) => {
      state.setUsage(pageId(req), Number(req.body?.percent ?? 0));
      res.json({ ok: true });
    }),
  );
  // Conversation routing: Meta moves the person's thread (a person answered in Meta's inbox, or the inbox
  // gave it back). Sends of an app that does not control the thread are refused with 10/2018300, and the
  // move reaches the app as a signed `take_thread_control` (away from it) or `pass_thread_control` (to it).
  router.post(
    "/pages/:pageId/thread-owner",
    handle(async (req, res) => {
      const { psid, appId, metadata } = req.body ?? {};
      if (typeof psid !== "string") throw new Error("psid is required");
      if (appId !== null && typeof appId !== "string") throw new Error("appId: an app id, or null for idle");
      const page = state.page(pageId(req));
      if (!page) throw new Error(`no page ${pageId(req)}`);
      const ours = ownAppIds[page.platform];
      const previous = state.setThreadOwner(page.pageId, psid, appId) ?? null;
      const now = Date.now();
      const control = {
        previous_owner_app_id: previous ?? (appId === ours ? null : ours),
        new_owner_app_id: appId,
        ...(typeof metadata === "string" ? { metadata } : {}),
      };
      const item = {
        sender: { id: psid },
        recipient: { id: page.pageId },
        timestamp: now,
        ...(appId === ours ? { pass_thread_control: control } : { take_thread_control: control }),
      };
      const result = await sendWebhook([{ id: page.pageId, time: now, messaging: [item] }], {
        object: page.platform === "instagram" ? "instagram" : "page",
      });
      res.json({ status: result.status, body: result.body, previousOwnerAppId: previous });
    }),
  );
  router.post(
    "/users",
    handle((req, res) => {
      const { pageId: id, psid, firstName, lastName, profilePic, name, username } = req.body ?? {};
      if (typeof id !== "string" || typeof psid !== "string") throw new Error("pageId and psid are required");
      state.addUser({ pageId: id, psid, firstName, lastName, profilePic, name, username });
      res.status(201).json({ ok: true });
    }),
  );
  router.get("/calls", (req, res) => {
    const { pageId: id, endpoint } = req.query;
    res.json(
      state.calls.filter(
        (c) =>
          (typeof id !== "string" || c.pageId === id) &&
          (typeof endpoint !== "string" || c.endpoint === (endpoint as GraphEndpointName)),
      ),
    );
  });
  router.get("/messages", (_req, res) => {
    res.json(state.sentMessages);
  });
  router.get("/webhooks", (_req, res) => {
    res.json(state.webhookDeliveries);
  });
  router.post(
    "/echo-mode",
    handle((req, res) => {
      const mode = req.body?.mode;
      if (!["before", "after", "random", "off"].includes(mode))
        throw new Error("mode: before|after|random|off");
      state.echoMode = mode;
      res.json({ ok: true });
    }),
  );
  router.post("/webhooks", async (req, res) => {
    const body = req.body ?? {};
    // `{entries, object?}` is built into a body (`object: "page"` unless given); anything else is sent as is.
    const entries = Array.isArray(body.entries) ? (body.entries as WebhookEntryInput[]) : undefined;
    const object = entries && typeof body.object === "string" ? { object: body.object } : {};
    try {
      const result = await sendWebhook(entries ?? body, {
        badSignature: req.query.badSignature === "true",
        ...object,
      });
      res.json({ status: result.status, body: result.body });
    } catch (error) {
      res.status(502).json({ error: (error as Error).message });
    }
  });
  router.post("/reset", (_req, res) => {
    state.reset();
    res.json({ ok: true });
  });
  return router;
}
