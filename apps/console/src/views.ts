import {
  type ConversationView,
  type MessageView,
  type PageView,
  threadOwnerOf,
} from "@switchboard/contracts";
import type { ConversationHeader } from "@switchboard/conversations";
import type { Overview, PageRow } from "./overview";

const escapeHtml = (value: unknown): string =>
  String(value ?? "").replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!,
  );

/** Tagged template that escapes every interpolated value unless it is already rendered `Html`. */
class Html {
  constructor(readonly value: string) {}
  toString() {
    return this.value;
  }
}
function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0]!;
  values.forEach((value, i) => {
    const rendered = Array.isArray(value)
      ? value.map((v) => (v instanceof Html ? v.value : escapeHtml(v))).join("")
      : value instanceof Html
        ? value.value
        : escapeHtml(value);
    out += rendered + strings[i + 1]!;
  });
  return new Html(out);
}

const STYLE = `
  body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2430; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  .meta { color: #5b6576; margin-bottom: 16px; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid #e3e7ee; vertical-align: top; }
  th { background: #f4f6f9; font-weight: 600; position: sticky; top: 0; }
  tr.problem td:first-child { border-left: 4px solid #d1435b; }
  tr.healthy td:first-child { border-left: 4px solid #2f9e62; }
  .id, .fields { color: #5b6576; font-size: 12px; }
  .bad { color: #b3263e; font-weight: 600; }
  .platform { font-size: 0.75em; padding: 0 0.4em; border-radius: 0.6em; border: 1px solid #999; }
  .platform-instagram { border-color: #c13584; color: #c13584; }
  .good { color: #237a4b; }
  .num { text-align: right; font-variant-numeric: tabular-nums; }
  .notice { background: #eef6ff; border: 1px solid #b7d4f7; padding: 8px 12px; margin-bottom: 16px; }
  .notice.error { background: #fdeff1; border-color: #f0b6c0; }
  form { display: inline; }
  button { font: inherit; padding: 2px 8px; margin: 0 4px 4px 0; cursor: pointer; white-space: nowrap; }
  ul.problems { margin: 0; padding-left: 16px; color: #b3263e; }
  .marker { font-size: 0.75em; padding: 0 0.4em; border-radius: 0.6em; background: #f4f6f9; color: #5b6576; margin-left: 4px; }
  .unsent { color: #5b6576; font-style: italic; }
`;

function page(title: string, body: Html): string {
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>${new Html(STYLE)}</style></head>
<body>${body}</body></html>`.value;
}

function ago(date: Date | null, now: Date): Html {
  if (!date) return html`<span class="bad">never</span>`;
  const seconds = Math.max(0, Math.round((now.getTime() - date.getTime()) / 1000));
  const text =
    seconds < 90
      ? `${seconds} s ago`
      : seconds < 5400
        ? `${Math.round(seconds / 60)} min ago`
        : seconds < 172_800
          ? `${Math.round(seconds / 3600)} h ago`
          : `${Math.round(seconds / 86_400)} days ago`;
  return html`<time datetime="${date.toISOString()}" title="${date.toISOString()}">${text}</time>`;
}

function subscriptionCell(row: PageRow): Html {
  const status = row.subscriptionStatus ?? (row.pageStatus === null ? "—" : "never checked");
  const healthy = row.subscriptionStatus === "subscribed" && row.missingFields.length === 0;
  return html`<span class="${healthy ? "good" : "bad"}" data-field="subscription">${status}</span>
    <div class="fields">${row.subscribedFields.join(", ") || "no fields"}</div>
    ${row.missingFields.length > 0 ? html`<div class="bad fields">missing: ${row.missingFields.join(", ")}</div>` : ""}
    ${row.subscriptionError ? html`<div class="bad fields">${row.subscriptionError}</div>` : ""}
    ${row.lastCheckedAt ? html`<div class="fields">checked ${row.lastCheckedAt.toISOString()}</div>` : ""}`;
}

function tokenCell(row: PageRow): Html {
  const label = {
    ok: "ok",
    unreadable: "cannot be decrypted",
    reauthorization_required: "reauthorization required",
    none: "—",
  }[row.tokenStatus];
  return html`<span class="${row.tokenStatus === "ok" ? "good" : "bad"}" data-field="token">${label}</span>
    ${row.tokenKeyId ? html`<div class="fields">key ${row.tokenKeyId}</div>` : ""}`;
}

function actions(row: PageRow, csrf: string): Html {
  const pageId = encodeURIComponent(row.pageId);
  const resubscribe =
    row.pageStatus === "active"
      ? html`<form method="post" action="/pages/${pageId}/resubscribe"><input type="hidden" name="csrf" value="${csrf}"><button type="submit" data-action="resubscribe">Re-subscribe</button></form>`
      : "";
  const replay =
    row.unrouted > 0
      ? html`<form method="post" action="/pages/${pageId}/replay-unrouted"><input type="hidden" name="csrf" value="${csrf}"><button type="submit" data-action="replay-unrouted">Replay unrouted</button></form>`
      : "";
  return html`${resubscribe}${replay}`;
}

function platformBadge(platform: "messenger" | "instagram"): Html {
  return html` <span class="platform platform-${platform}" data-field="platform">${platform === "instagram" ? "Instagram" : "Messenger"}</span>`;
}

const OWNER_LABELS = {
  switchboard: "Switchboard",
  page_inbox: "Page inbox",
  instagram_inbox: "Instagram inbox",
  other_app: "another app",
  idle: "nobody",
} as const;

/** Conversation routing: who Meta last gave the thread to (our app, Meta's inbox, another app). */
function threadOwnerCell(
  conversation: ConversationHeader | ConversationView,
  ourAppId: string | undefined,
): Html {
  if (conversation.threadOwner === null) return html`<span class="id">—</span>`;
  const owner = threadOwnerOf(conversation.threadOwner.appId, ourAppId);
  return html`<span class="${owner === "switchboard" || owner === "idle" ? "" : "bad"}" data-field="thread-owner">${OWNER_LABELS[owner]}</span>${conversation.threadOwner.appId ? html`<div class="id">app ${conversation.threadOwner.appId}</div>` : ""}`;
}

/** A message's text with what happened to it: edited, unsent, unsupported, received on standby, a story reply. */
function messageCell(message: MessageView): Html {
  const text =
    message.deletedAt !== null
      ? html`<span class="unsent">unsent by the customer</span>`
      : message.unsupported
        ? html`<span class="unsent">a message Meta does not deliver</span>`
        : (message.text ?? html`<span class="id">(${message.kind})</span>`);
  const markers = [
    message.editCount > 0
      ? html`<span class="marker" data-marker="edited" title="${message.editedAt ?? ""}">edited ×${String(message.editCount)}</span>`
      : "",
    message.deletedAt !== null
      ? html`<span class="marker" data-marker="unsent" title="${message.deletedAt}">unsent</span>`
      : "",
    message.unsupported ? html`<span class="marker" data-marker="unsupported">unsupported</span>` : "",
    message.receivedOnStandby ? html`<span class="marker" data-marker="standby">on standby</span>` : "",
    message.replyTo?.story
      ? html`<span class="marker" data-marker="story-reply">reply to a story</span>`
      : "",
  ];
  return html`${text}${markers}`;
}

function contactName(conversation: ConversationHeader | ConversationView): string {
  const { contact } = conversation;
  if (contact.username) return `@${contact.username}${contact.name ? ` (${contact.name})` : ""}`;
  const name = [contact.firstName, contact.lastName].filter(Boolean).join(" ") || contact.name;
  return name || conversation.psid;
}

function pageHeading(pageView: PageView): Html {
  return html`<strong>${pageView.name}</strong>${platformBadge(pageView.platform)} <span class="id">${pageView.pageId}</span>${pageView.status !== "active" ? html` · <span class="bad" data-field="page-status">${pageView.status}${pageView.statusReason ? `: ${pageView.statusReason}` : ""}</span>` : ""}`;
}

/** A page's conversations, newest first, a keyset screen at a time. */
export function conversationsPage(
  pageView: PageView,
  conversations: { data: ConversationView[]; nextCursor: string | null },
  options: { now: Date; ourAppId?: string },
): string {
  const base = `/pages/${encodeURIComponent(pageView.pageId)}/conversations`;
  const body = html`
<h1>Conversations — ${pageHeading(pageView)}</h1>
<div class="meta"><a href="/">pages</a> · ${options.now.toISOString()}</div>
<table>
<thead><tr><th>Person</th><th>Platform</th><th>Thread owner</th><th>Last message</th><th></th></tr></thead>
<tbody>
${conversations.data.map(
  (c) => html`<tr data-conversation-id="${c.id}">
<td><a href="/conversations/${c.id}">${contactName(c)}</a><div class="id">${c.psid}</div></td>
<td>${platformBadge(c.platform)}</td>
<td>${threadOwnerCell(c, options.ourAppId)}</td>
<td>${c.lastMessage ? messageCell(c.lastMessage) : html`<span class="id">none yet</span>`}</td>
<td>${c.lastMessageAt ? ago(new Date(c.lastMessageAt), options.now) : ""}</td>
</tr>`,
)}
</tbody></table>
${conversations.nextCursor ? html`<nav class="pager"><a href="${base}?cursor=${encodeURIComponent(conversations.nextCursor)}" rel="next">older →</a></nav>` : ""}`;
  return page(`Switchboard console — ${pageView.name}`, body);
}

/** One conversation's messages in Meta's order. */
export function messagesPage(
  pageView: PageView,
  conversation: ConversationHeader,
  messages: { data: MessageView[]; nextCursor: string | null },
  options: { now: Date; ourAppId?: string },
): string {
  const body = html`
<h1>${contactName(conversation)} — ${pageHeading(pageView)}</h1>
<div class="meta"><a href="/pages/${encodeURIComponent(pageView.pageId)}/conversations">conversations</a> · thread owner: ${threadOwnerCell(conversation, options.ourAppId)} · ${options.now.toISOString()}</div>
<table>
<thead><tr><th>When</th><th>From</th><th>Message</th><th>Status</th></tr></thead>
<tbody>
${messages.data.map(
  (m) => html`<tr data-message-id="${m.id}" data-mid="${m.mid ?? ""}">
<td><time datetime="${m.sentAt}">${m.sentAt}</time></td>
<td>${m.direction === "incoming" ? "customer" : (m.sentBy ?? "page")}</td>
<td>${messageCell(m)}</td>
<td>${m.status}${m.error ? html`<div class="bad fields">${m.error}</div>` : ""}</td>
</tr>`,
)}
</tbody></table>
${messages.nextCursor ? html`<nav class="pager"><a href="/conversations/${conversation.id}?cursor=${encodeURIComponent(messages.nextCursor)}" rel="next">later →</a></nav>` : ""}`;
  return page(`Switchboard console — ${contactName(conversation)}`, body);
}

export interface Notice {
  text: string;
  error: boolean;
}

export function overviewPage(
  overview: Overview,
  options: { csrf: string; signOut: boolean; now: Date; notice?: Notice },
): string {
  const { rows, total, withProblems, offset, limit } = overview;
  const current = Math.floor(offset / limit) + 1;
  const last = Math.max(1, Math.ceil(total / limit));
  const pager =
    last > 1
      ? html`<nav class="pager" data-summary="pager">${current > 1 ? html`<a href="/?offset=${String(Math.max(0, offset - limit))}" rel="prev">← previous</a> · ` : ""}page ${String(current)} of ${String(last)}${current < last ? html` · <a href="/?offset=${String(offset + limit)}" rel="next">next →</a>` : ""}</nav>`
      : "";
  const body = html`
<h1>Switchboard — pages</h1>
<div class="meta">${String(total)} pages, <span data-summary="problems">${String(withProblems)}</span> with problems · <a href="/webhooks">outbound webhooks</a> · ${options.now.toISOString()}${options.signOut ? html` · <form method="post" action="/logout"><button type="submit" data-action="sign-out">Sign out</button></form>` : ""}</div>
${pager}
${options.notice ? html`<div class="notice ${options.notice.error ? "error" : ""}" role="status">${options.notice.text}</div>` : ""}
<table>
<thead><tr><th>Page</th><th>Company</th><th>Subscription</th><th>Token</th><th>Last webhook</th>
<th class="num">Messages (1 h)</th><th class="num">Waiting for share</th><th class="num">Unrouted</th><th class="num">Dead-lettered</th><th>Problems</th><th>Actions</th></tr></thead>
<tbody>
${rows.map(
  (row) => html`<tr class="${row.problems.length > 0 ? "problem" : "healthy"}" data-page-id="${row.pageId}">
<td><strong>${row.name ? html`<a href="/pages/${encodeURIComponent(row.pageId)}/conversations">${row.name}</a>` : "(not connected)"}</strong>${row.platform ? platformBadge(row.platform) : ""}<div class="id">${row.pageId}${row.pageStatus && row.pageStatus !== "active" ? html` · <span class="bad">${row.pageStatus}</span>` : ""}</div></td>
<td>${row.companyId ?? "—"}</td>
<td>${subscriptionCell(row)}</td>
<td>${tokenCell(row)}</td>
<td data-field="last-webhook">${ago(row.lastWebhookAt, options.now)}</td>
<td class="num" data-field="messages">${row.messagesLastHour}</td>
<td class="num" data-field="waiting-for-share">${row.waitingForShare}</td>
<td class="num" data-field="unrouted">${row.unrouted}</td>
<td class="num" data-field="dead-lettered">${row.deadLettered}</td>
<td>${row.problems.length > 0 ? html`<ul class="problems">${row.problems.map((p) => html`<li>${p}</li>`)}</ul>` : html`<span class="good">healthy</span>`}</td>
<td>${actions(row, options.csrf)}</td>
</tr>`,
)}
</tbody></table>
${pager}`;
  return page("Switchboard console", body);
}

export function loginPage(failed: boolean): string {
  return page(
    "Switchboard console — sign in",
    html`<h1>Switchboard console</h1>
<form method="post" action="/login" style="display:block;max-width:360px">
${failed ? html`<div class="notice error" role="alert">That operator token is not valid.</div>` : ""}
<label for="token">Operator token</label><br>
<input id="token" name="token" type="password" autocomplete="current-password" style="width:100%;margin:6px 0 12px" required>
<button type="submit">Sign in</button>
</form>`,
  );
}

export interface WebhookEndpointRow {
  id: string;
  companyId: string;
  url: string;
  events: string[] | null;
  enabled: boolean;
  disabledReason: string | null;
  health: {
    pending: number;
    oldestPendingAt: string | null;
    failingSince: string | null;
    consecutiveFailures: number;
    lastDeliveredAt: string | null;
  };
}

/** Every company's outbound webhook endpoints with their health, and a replay button for each. */
export function webhooksPage(
  endpoints: WebhookEndpointRow[],
  options: { csrf: string; now: Date; notice?: Notice },
): string {
  const date = (value: string | null) => (value ? new Date(value) : null);
  const body = html`
<h1>Switchboard — outbound webhooks</h1>
<div class="meta">${String(endpoints.length)} endpoints · <a href="/">pages</a> · ${options.now.toISOString()}</div>
${options.notice ? html`<div class="notice ${options.notice.error ? "error" : ""}" role="status">${options.notice.text}</div>` : ""}
<table>
<thead><tr><th>Endpoint</th><th>Company</th><th>Events</th><th>State</th><th class="num">Pending</th><th>Oldest pending</th><th>Failing since</th><th>Last delivered</th><th>Actions</th></tr></thead>
<tbody>
${endpoints.map((endpoint) => {
  const problem = !endpoint.enabled || endpoint.health.failingSince !== null;
  return html`<tr class="${problem ? "problem" : "healthy"}" data-endpoint-id="${endpoint.id}">
<td><strong>${endpoint.url}</strong><div class="id">${endpoint.id}</div></td>
<td>${endpoint.companyId}</td>
<td class="fields">${endpoint.events ? endpoint.events.join(", ") : "all"}</td>
<td data-field="state">${endpoint.enabled ? (endpoint.health.failingSince ? html`<span class="bad">failing (${String(endpoint.health.consecutiveFailures)} in a row)</span>` : html`<span class="good">enabled</span>`) : html`<span class="bad">disabled</span><div class="id">${endpoint.disabledReason ?? ""}</div>`}</td>
<td class="num" data-field="pending">${String(endpoint.health.pending)}</td>
<td>${endpoint.health.oldestPendingAt ? ago(date(endpoint.health.oldestPendingAt), options.now) : "—"}</td>
<td>${endpoint.health.failingSince ? ago(date(endpoint.health.failingSince), options.now) : "—"}</td>
<td>${ago(date(endpoint.health.lastDeliveredAt), options.now)}</td>
<td><form method="post" action="/webhooks/${endpoint.id}/replay"><input type="hidden" name="csrf" value="${options.csrf}"><select name="since" aria-label="replay since"><option value="1h">last hour</option><option value="24h" selected>last 24 h</option><option value="7d">last 7 days</option></select><button type="submit" data-action="replay-webhooks">Replay</button></form></td>
</tr>`;
})}
</tbody></table>`;
  return page("Switchboard console — webhooks", body);
}
