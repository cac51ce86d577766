/** The in-memory world of the fake Meta: pages and their tokens, users, subscriptions, injected failures. */

export type GraphEndpointName =
  | "subscribed_apps"
  | "profile"
  | "messages"
  | "conversations"
  | "refresh_access_token";
export type EchoMode = "before" | "after" | "random" | "off";
/** What a registered "page" is: a Facebook Page (Messenger) or an Instagram professional account. */
export type FakePlatform = "messenger" | "instagram";
/** Which API a call reached: graph.facebook.com, or graph.instagram.com (the fake's `/instagram-api`). */
export type GraphHost = "facebook" | "instagram";

/** The only host that knows a platform's accounts: the other one cannot parse their tokens. */
export const hostOfPlatform = (platform: FakePlatform): GraphHost =>
  platform === "instagram" ? "instagram" : "facebook";

export interface FakePageInput {
  pageId: string;
  token: string;
  name?: string;
  /** "messenger" when omitted. An Instagram account answers on the Instagram host only. */
  platform?: FakePlatform;
  /** The Instagram account's username (`GET /me`); `account_<pageId>` for an Instagram account when omitted. */
  username?: string;
}

export interface FakePage {
  pageId: string;
  token: string;
  name: string;
  platform: FakePlatform;
  /** Instagram accounts only. */
  username?: string;
  /** Fields this app is subscribed to on the page; undefined when not subscribed. */
  subscribedFields?: string[];
  usagePercent: number;
}

export interface FakeUserInput {
  pageId: string;
  psid: string;
  firstName?: string;
  lastName?: string;
  profilePic?: string;
  /** Instagram profile fields; `name` defaults to first and last name, `username` to `user_<psid>`. */
  name?: string;
  username?: string;
}

export interface InjectedError {
  /** Meta's error code (190, 4, 17, 32, 613, 80001, 1, 2, 551, 10, 100...). Omit with `status` for a bare HTTP error. */
  code?: number;
  subcode?: number;
  /** HTTP status; defaults to what Meta answers for the code. */
  status?: number;
  message?: string;
  type?: string;
  /** How many calls fail; unlimited until `clearErrors`/`reset` when omitted. */
  times?: number;
  /**
   * Limit to one endpoint: "subscribed_apps", "messages", "profile", "conversations", "refresh_access_token",
   * or with a method, "subscribed_apps:POST".
   */
  endpoint?: string;
  /** Wait this long before answering (or before failing, with a code/status): simulates a slow Meta. */
  delayMs?: number;
  /** Answer a non-JSON body (as a proxy in front of Meta would). */
  htmlBody?: boolean;
  /**
   * Send API only: Meta sends the message (it is in the thread, the echo goes out), then the answer is lost:
   * the fault (`delayMs`, `status`/`code`) applies after sending, or with `dropConnection` the socket closes.
   */
  afterSending?: boolean;
  dropConnection?: boolean;
}

export interface RecordedCall {
  host: GraphHost;
  method: string;
  path: string;
  endpoint: GraphEndpointName;
  pageId?: string;
  psid?: string;
  token?: string;
  appsecretProofValid: boolean;
  query: Record<string, unknown>;
  body: unknown;
  at: number;
}

export interface SentMessage {
  pageId: string;
  psid: string;
  mid: string;
  body: Record<string, unknown>;
  at: number;
}

/** A message a person sent to a page, as the fake delivered it in a webhook (the thread's other side). */
export interface PersonMessage {
  pageId: string;
  psid: string;
  mid: string;
  text?: string;
  at: number;
}

/** One message of a page's thread with a person, oldest first; `from` says who wrote it. */
export interface ThreadMessage {
  pageId: string;
  psid: string;
  mid: string;
  /** Meta answers "" for a message without text (an attachment). */
  text: string;
  from: "page" | "person";
  at: number;
}

export interface WebhookDelivery {
  url: string;
  body: string;
  status?: number;
  error?: string;
  at: number;
}

export type TokenStatus = "valid" | "revoked" | "replaced";

export type FakeUser = Required<FakeUserInput>;

/** A person with the defaults filled in (also for people of a state file saved before a field existed). */
export function fakeUser(input: FakeUserInput): FakeUser {
  const firstName = input.firstName ?? "Test";
  const lastName = input.lastName ?? `User ${input.psid}`;
  return {
    pageId: input.pageId,
    psid: input.psid,
    firstName,
    lastName,
    profilePic: input.profilePic ?? `https://fake-meta.invalid/pics/${input.psid}.jpg`,
    name: input.name ?? `${firstName} ${lastName}`,
    username: input.username ?? `user_${input.psid}`,
  };
}

/**
 * What survives a restart when a state file is used: the registrations (pages, their tokens, people,
 * subscriptions). Logs, injected errors and the echo mode are a session's and start afresh.
 */
export interface Registrations {
  pages: FakePage[];
  tokens: Array<{ token: string; pageId: string; status: TokenStatus }>;
  users: FakeUser[];
}

// Logs keep the newest entries only, so a long `pnpm dev` session does not grow without bound.
const LOG_LIMIT = 10_000;

function append<T>(log: T[], entry: T): void {
  log.push(entry);
  if (log.length > LOG_LIMIT) log.splice(0, log.length - LOG_LIMIT);
}

export class FakeMetaState {
  readonly calls: RecordedCall[] = [];
  readonly sentMessages: SentMessage[] = [];
  readonly webhookDeliveries: WebhookDelivery[] = [];
  readonly personMessages: PersonMessage[] = [];
  echoMode: EchoMode;
  private readonly pages = new Map<string, FakePage>();
  private readonly tokens = new Map<string, { pageId: string; status: TokenStatus }>();
  private readonly users = new Map<string, FakeUser>();
  private readonly errors = new Map<string, InjectedError[]>();
  /** Conversation routing: the app each (page, person) thread belongs to, when Meta moved it. */
  private readonly threadOwners = new Map<string, string | null>();
  private readonly registrationListeners: Array<() => void> = [];

  constructor(private readonly defaultEchoMode: EchoMode = "random") {
    this.echoMode = defaultEchoMode;
  }

  /** Called after every change to a page, token, person or subscription (the state file's writer listens). */
  onRegistrationChange(listener: () => void): void {
    this.registrationListeners.push(listener);
  }

  registrations(): Registrations {
    return structuredClone({
      pages: [...this.pages.values()],
      tokens: [...this.tokens].map(([token, info]) => ({ token, ...info })),
      users: [...this.users.values()],
    });
  }

  /** Replaces the registrations (a state file loaded at start); logs and injected errors are untouched. */
  restoreRegistrations(registrations: Registrations): void {
    const copy = structuredClone(registrations);
    this.pages.clear();
    this.tokens.clear();
    this.users.clear();
    for (const page of copy.pages) this.pages.set(page.pageId, page);
    for (const { token, pageId, status } of copy.tokens) this.tokens.set(token, { pageId, status });
    for (const user of copy.users) this.users.set(user.psid, user);
  }

  addPage({ pageId, token, name, platform, username }: FakePageInput): FakePage {
    const existing = this.pages.get(pageId);
    if (existing) this.retireTokens(pageId, "replaced");
    const kind = platform ?? existing?.platform ?? "messenger";
    const handle = username ?? existing?.username ?? (kind === "instagram" ? `account_${pageId}` : undefined);
    const page: FakePage = {
      pageId,
      token,
      name: name ?? `${kind === "instagram" ? "Instagram account" : "Page"} ${pageId}`,
      platform: kind,
      ...(handle ? { username: handle } : {}),
      usagePercent: existing?.usagePercent ?? 0,
      ...(existing?.subscribedFields ? { subscribedFields: existing.subscribedFields } : {}),
    };
    this.pages.set(pageId, page);
    this.tokens.set(token, { pageId, status: "valid" });
    this.registrationChanged();
    return page;
  }

  page(pageId: string): FakePage | undefined {
    return this.pages.get(pageId);
  }

  listPages(): FakePage[] {
    return [...this.pages.values()];
  }

  /** The page's tokens stop working (Meta answers 190 / 460 for them): its current one and any refreshed ones. */
  revokeToken(pageId: string): void {
    this.requirePage(pageId);
    this.retireTokens(pageId, "revoked");
    this.registrationChanged();
  }

  /** A new token for the page (re-authorisation); the old ones then fail with 190 / 463. */
  setToken(pageId: string, token: string): void {
    const page = this.requirePage(pageId);
    this.retireTokens(pageId, "replaced");
    page.token = token;
    this.tokens.set(token, { pageId, status: "valid" });
    this.registrationChanged();
  }

  /**
   * Instagram's `refresh_access_token`: `token` becomes the page's current one, and the older ones stay valid
   * (at Meta, until they expire; the fake never expires them).
   */
  addRefreshedToken(pageId: string, token: string): void {
    this.requirePage(pageId).token = token;
    this.tokens.set(token, { pageId, status: "valid" });
    this.registrationChanged();
  }

  tokenInfo(token: string): { pageId: string; status: TokenStatus } | undefined {
    return this.tokens.get(token);
  }

  addUser(input: FakeUserInput): void {
    this.users.set(input.psid, fakeUser(input));
    this.registrationChanged();
  }

  user(psid: string): FakeUser | undefined {
    return this.users.get(psid);
  }

  subscriptions(pageId: string): string[] | undefined {
    return this.pages.get(pageId)?.subscribedFields;
  }

  subscribe(pageId: string, fields: string[]): void {
    this.requirePage(pageId).subscribedFields = [...new Set(fields)];
    this.registrationChanged();
  }

  /** Drift: Meta unsubscribed the app (e.g. after 8 hours of failing webhooks). */
  dropSubscription(pageId: string): void {
    delete this.requirePage(pageId).subscribedFields;
    this.registrationChanged();
  }

  setUsage(pageId: string, percent: number): void {
    this.requirePage(pageId).usagePercent = percent;
    this.registrationChanged();
  }

  usage(pageId: string | undefined): number {
    return (pageId && this.pages.get(pageId)?.usagePercent) || 0;
  }

  injectError(pageId: string, error: InjectedError): void {
    const list = this.errors.get(pageId) ?? [];
    list.push({ ...error });
    this.errors.set(pageId, list);
  }

  clearErrors(pageId: string): void {
    this.errors.delete(pageId);
  }

  /** The first injected error matching this call, consuming one of its `times`. */
  takeInjectedError(pageId: string, endpoint: GraphEndpointName, method: string): InjectedError | undefined {
    const list = this.errors.get(pageId);
    if (!list) return undefined;
    const index = list.findIndex(
      (e) => e.endpoint === undefined || e.endpoint === endpoint || e.endpoint === `${endpoint}:${method}`,
    );
    if (index < 0) return undefined;
    const error = list[index]!;
    if (error.times !== undefined) {
      error.times -= 1;
      if (error.times <= 0) list.splice(index, 1);
    }
    return error;
  }

  recordCall(call: RecordedCall): void {
    append(this.calls, call);
  }

  recordSentMessage(message: SentMessage): void {
    append(this.sentMessages, message);
  }

  recordDelivery(delivery: WebhookDelivery): void {
    append(this.webhookDeliveries, delivery);
  }

  recordPersonMessage(message: PersonMessage): void {
    append(this.personMessages, message);
  }

  /** The page's thread with the person: what the page sent through the Send API and what the person wrote. */
  conversation(pageId: string, psid: string): ThreadMessage[] {
    const fromPage = this.sentMessages
      .filter((m) => m.pageId === pageId && m.psid === psid)
      .map((m): ThreadMessage => {
        const text = (m.body.message as { text?: unknown } | undefined)?.text;
        return {
          pageId,
          psid,
          mid: m.mid,
          text: typeof text === "string" ? text : "",
          from: "page",
          at: m.at,
        };
      });
    const fromPerson = this.personMessages
      .filter((m) => m.pageId === pageId && m.psid === psid)
      .map(
        (m): ThreadMessage => ({ pageId, psid, mid: m.mid, text: m.text ?? "", from: "person", at: m.at }),
      );
    return [...fromPage, ...fromPerson].sort((a, b) => a.at - b.at);
  }

  callsTo(pageId: string, endpoint?: GraphEndpointName): RecordedCall[] {
    return this.calls.filter(
      (c) => c.pageId === pageId && (endpoint === undefined || c.endpoint === endpoint),
    );
  }

  /** Who controls the person's thread on the page: an app id, null (idle), undefined (never moved). */
  threadOwner(pageId: string, psid: string): string | null | undefined {
    return this.threadOwners.get(`${pageId}:${psid}`);
  }

  /** Moves the person's thread to `appId` (null: idle); returns the owner before. */
  setThreadOwner(pageId: string, psid: string, appId: string | null): string | null | undefined {
    const key = `${pageId}:${psid}`;
    const previous = this.threadOwners.get(key);
    this.threadOwners.set(key, appId);
    return previous;
  }

  reset(): void {
    this.threadOwners.clear();
    this.calls.length = 0;
    this.sentMessages.length = 0;
    this.webhookDeliveries.length = 0;
    this.personMessages.length = 0;
    this.pages.clear();
    this.tokens.clear();
    this.users.clear();
    this.errors.clear();
    this.echoMode = this.defaultEchoMode;
    this.registrationChanged();
  }

  private registrationChanged(): void {
    for (const listener of this.registrationListeners) listener();
  }

  /** The page's current token (whatever its status, as ever) and any other still valid (refreshed) ones. */
  private retireTokens(pageId: string, status: TokenStatus): void {
    const current = this.pages.get(pageId)?.token;
    for (const [token, info] of this.tokens) {
      if (info.pageId === pageId && (token === current || info.status === "valid")) info.status = status;
    }
  }

  private requirePage(pageId: string): FakePage {
    const page = this.pages.get(pageId);
    if (!page) throw new Error(`fake-meta: unknown page ${pageId}`);
    return page;
  }
}
