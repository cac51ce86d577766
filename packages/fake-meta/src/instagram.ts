import { createHash, randomBytes } from "node:crypto";
import express, { type Router } from "express";
import {
  answerConversation,
  completeSend,
  createAuthorise,
  handleSubscribedApps,
  type OnMessageSent,
  pickFields,
  readSendRequest,
  requestedFields,
  type SendRules,
  sendBadParameter,
  sendUnknownObject,
  sendUnknownPath,
} from "./graph-shared";
import type { FakeMetaState } from "./state";

/**
 * The Instagram API with Instagram Login (graph.instagram.com), for Instagram professional accounts
 * registered with `platform: "instagram"`. The fake serves it under this path of its own URL, so a service
 * calling the Facebook host for an Instagram account (or the other way round) fails with 190.
 */
export const INSTAGRAM_API_PATH = "/instagram-api";

/** Fields an app can subscribe an Instagram account to (Instagram's names: `messaging_referral`, `message_edit`). */
export const INSTAGRAM_SUBSCRIBABLE_FIELDS = new Set([
  "messages",
  "message_reactions",
  "messaging_seen",
  "messaging_postbacks",
  "messaging_referral",
  "messaging_optins",
  "message_edit",
  "messaging_handover",
  "standby",
]);

const PROFILE_FIELDS = new Set(["id", "name", "username", "profile_pic"]);
const ME_FIELDS = new Set(["id", "user_id", "username", "name"]);
/** Instagram sends no `file` attachments (Messenger does). */
const ATTACHMENT_TYPES = new Set(["image", "video", "audio"]);
/** What Meta answers in `expires_in` for a refreshed long-lived token: 60 days. */
export const INSTAGRAM_TOKEN_LIFETIME_SECONDS = 5_184_000;

const SEND_RULES: SendRules = {
  // Instagram takes `messaging_type` (and tags) but does not require it.
  messagingTypeRequired: false,
  textTooLong: (text) =>
    Buffer.byteLength(text, "utf8") > 1000
      ? "(#100) Param message[text] must be at most 1000 bytes (UTF-8)"
      : undefined,
  badAttachment: (attachment) => {
    const type = attachment.type;
    if (typeof type !== "string" || !ATTACHMENT_TYPES.has(type)) {
      return `(#100) Param message[attachment][type] must be one of {${[...ATTACHMENT_TYPES].join(", ")}} - got "${String(type)}".`;
    }
    const url = (attachment.payload as { url?: unknown } | undefined)?.url;
    return typeof url === "string" && url !== ""
      ? undefined
      : "(#100) Param message[attachment][payload][url] is required";
  },
  // Instagram's subcode for "No matching user found" as third-party code handles it (not verified at Meta).
  unknownRecipientSubcode: 2534014,
};

/** Letters and digits only, as in Instagram's ids and tokens. */
const alphanumeric = (bytes: number) =>
  randomBytes(bytes)
    .toString("base64")
    .replace(/[^A-Za-z0-9]/g, "");

/** A unique mid shaped like Instagram's: base64-looking letters and digits, starting `aWdfZAG1f` (`ig_…`). */
const instagramMid = () => `aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOj${alphanumeric(48)}`;

/** A long-lived Instagram User access token, shaped like Meta's (`IGAA…`). */
const instagramToken = () => `IGAA${alphanumeric(96)}`;

/** A stable thread id per account and person, shaped like Instagram's (`aWdfZAG06…`). */
const threadId = (igId: string, igsid: string) =>
  `aWdfZAG06${createHash("sha256")
    .update(`instagram:${igId}:${igsid}`)
    .digest("base64")
    .replace(/[^A-Za-z0-9]/g, "")}`;

export interface InstagramRouterOptions {
  state: FakeMetaState;
  appSecret: string;
  /** The Instagram app's id, as `GET subscribed_apps` names it. */
  instagramAppId: string;
  /** When set, other versions in the path are refused, as on the Facebook host. */
  graphApiVersion?: string;
  /** Sends the Instagram echo (no `app_id`, no `metadata`). */
  onMessageSent: OnMessageSent;
  requireAppsecretProof?: boolean;
}

/** The Instagram API calls Switchboard makes, with the Facebook host's checks; mounted at `INSTAGRAM_API_PATH`. */
export function createInstagramRouter(options: InstagramRouterOptions): Router {
  const { state, instagramAppId } = options;
  const authorise = createAuthorise({ ...options, host: "instagram" });
  const router = express.Router();
  router.use(express.json({ limit: "1mb" }), express.urlencoded({ extended: true }));

  // https://developers.facebook.com/docs/instagram-platform/reference/refresh_access_token: no version in the path.
  router.get("/refresh_access_token", async (req, res) => {
    const auth = await authorise(req, res, "refresh_access_token", { pageScoped: false, versioned: false });
    if (!auth) return;
    if (req.query.grant_type !== "ig_refresh_token") {
      return sendBadParameter(res, "(#100) Param grant_type must be ig_refresh_token");
    }
    // Never recorded: the call log keeps only the token presented, as for every call.
    const token = instagramToken();
    state.addRefreshedToken(auth.tokenPageId, token);
    res.json({ access_token: token, token_type: "bearer", expires_in: INSTAGRAM_TOKEN_LIFETIME_SECONDS });
  });

  // The token's own account: `user_id` is the id webhooks name in `entry.id`.
  router.get("/:version/me", async (req, res) => {
    const auth = await authorise(req, res, "profile", { pageId: "me", pageScoped: true });
    if (!auth) return;
    const requested = requestedFields(req, res, ME_FIELDS, ["user_id", "username"], "User");
    if (!requested) return;
    const { page } = auth;
    res.json(
      pickFields(
        { id: page.pageId, user_id: page.pageId, username: page.username, name: page.name },
        requested,
      ),
    );
  });

  router.all("/:version/:igId/subscribed_apps", async (req, res) => {
    const auth = await authorise(req, res, "subscribed_apps", {
      pageId: String(req.params.igId),
      pageScoped: true,
    });
    if (!auth) return;
    handleSubscribedApps(req, res, state, auth.page, INSTAGRAM_SUBSCRIBABLE_FIELDS, {
      id: instagramAppId,
      name: "Switchboard",
    });
  });

  router.post("/:version/:igId/messages", async (req, res) => {
    const auth = await authorise(req, res, "messages", { pageId: String(req.params.igId), pageScoped: true });
    if (!auth) return;
    const body = req.body as Record<string, unknown>;
    const request = readSendRequest(res, state, auth, body, SEND_RULES, instagramAppId);
    if (!request) return;
    const { user, recipient, message } = request;
    const sent = {
      pageId: auth.tokenPageId,
      psid: user.psid,
      mid: instagramMid(),
      body: { ...body, recipient, message },
    };
    await completeSend(req, res, state, sent, options.onMessageSent);
  });

  // https://developers.facebook.com/docs/instagram-platform/instagram-api-with-instagram-login/conversations-api
  router.get("/:version/:igId/conversations", async (req, res) => {
    const igsid = typeof req.query.user_id === "string" ? req.query.user_id : undefined;
    const auth = await authorise(req, res, "conversations", {
      pageId: String(req.params.igId),
      ...(igsid ? { psid: igsid } : {}),
      pageScoped: true,
    });
    if (!auth) return;
    if (req.query.platform !== "instagram") {
      return sendBadParameter(res, "(#100) Param platform must be instagram on the Instagram API");
    }
    answerConversation(req, res, state, auth.page, {
      threadId,
      page: (page) => ({ username: page.username, id: page.pageId }),
      person: (user) => ({ username: user.username, id: user.psid }),
    });
  });

  // The Instagram user profile of a person who wrote to the account (IGSIDs are account-scoped).
  router.get("/:version/:igsid", async (req, res) => {
    const igsid = String(req.params.igsid);
    const user = state.user(igsid);
    const auth = await authorise(req, res, "profile", {
      psid: igsid,
      pageId: user?.pageId,
      pageScoped: false,
    });
    if (!auth) return;
    if (!user || user.pageId !== auth.tokenPageId) return sendUnknownObject(res, igsid);
    const requested = requestedFields(req, res, PROFILE_FIELDS, ["name", "id"], "User");
    if (!requested) return;
    res.json(
      pickFields(
        { id: user.psid, name: user.name, username: user.username, profile_pic: user.profilePic },
        requested,
      ),
    );
  });

  // Nothing under the Instagram host falls through to the Facebook routes.
  router.use(sendUnknownPath);
  return router;
}
