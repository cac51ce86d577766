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
} from "./graph-shared";
import type { FakeMetaState } from "./state";

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

const SEND_RULES: SendRules = {
  messagingTypeRequired: true,
  textTooLong: (text) =>
    text.length > 2000
      ? "(#100) Length of param message[text] must be less than or equal to 2000"
      : undefined,
  unknownRecipientSubcode: 2018001,
};

/** A stable thread id per page and person, shaped like Meta's (`t_` and digits). */
const threadId = (pageId: string, psid: string) =>
  `t_${BigInt(`0x${createHash("sha256").update(`${pageId}:${psid}`).digest("hex").slice(0, 15)}`)}`;

export interface GraphRouterOptions {
  state: FakeMetaState;
  appSecret: string;
  appId: string;
  /** When set, other versions in the path are refused (catches a service ignoring GRAPH_API_VERSION). */
  graphApiVersion?: string;
  onMessageSent: OnMessageSent;
  requireAppsecretProof?: boolean;
}

/** The Graph API calls Switchboard makes for Messenger pages (graph.facebook.com), with Meta's checks and error shapes. */
export function createGraphRouter(options: GraphRouterOptions): Router {
  const { state, appId } = options;
  const authorise = createAuthorise({ ...options, host: "facebook" });
  const router = express.Router();
  router.use(express.json({ limit: "1mb" }), express.urlencoded({ extended: true }));

  router.all("/:version/:pageId/subscribed_apps", async (req, res) => {
    const pageId = String(req.params.pageId);
    const auth = await authorise(req, res, "subscribed_apps", { pageId, pageScoped: true });
    if (!auth) return;
    handleSubscribedApps(req, res, state, auth.page, SUBSCRIBABLE_FIELDS, {
      category: "Business",
      link: `https://fake-meta.invalid/apps/${appId}`,
      name: "Switchboard",
      id: appId,
    });
  });

  router.post("/:version/:pageId/messages", async (req, res) => {
    const auth = await authorise(req, res, "messages", {
      pageId: String(req.params.pageId),
      pageScoped: true,
    });
    if (!auth) return;
    const body = req.body as Record<string, unknown>;
    const request = readSendRequest(res, state, auth, body, SEND_RULES, appId);
    if (!request) return;
    const { user, recipient, message } = request;
    const mid = `m_${randomBytes(24).toString("base64url")}`;
    const sent = { pageId: auth.tokenPageId, psid: user.psid, mid, body: { ...body, recipient, message } };
    await completeSend(req, res, state, sent, options.onMessageSent);
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
    const platform = req.query.platform;
    if (platform !== undefined && platform !== "messenger") {
      // Instagram threads are the Instagram host's (`/instagram-api`).
      return sendBadParameter(res, "(#100) Param platform must be one of {instagram, messenger}");
    }
    answerConversation(req, res, state, auth.page, {
      threadId,
      page: (page) => ({ name: page.name, email: `${page.pageId}@facebook.com`, id: page.pageId }),
      person: (user) => ({ name: user.name, email: `${user.psid}@facebook.com`, id: user.psid }),
    });
  });

  router.get("/:version/:id", async (req, res) => {
    const psid = String(req.params.id);
    const user = state.user(psid);
    const auth = await authorise(req, res, "profile", { psid, pageId: user?.pageId, pageScoped: false });
    if (!auth) return;
    // PSIDs are page-scoped: another page's token cannot see this person.
    if (!user || user.pageId !== auth.tokenPageId) return sendUnknownObject(res, psid);
    const requested = requestedFields(req, res, PROFILE_FIELDS, ["name", "id"], "User");
    if (!requested) return;
    res.json(
      pickFields(
        {
          id: user.psid,
          name: user.name,
          first_name: user.firstName,
          last_name: user.lastName,
          profile_pic: user.profilePic,
        },
        requested,
      ),
    );
  });

  return router;
}
