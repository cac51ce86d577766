import {
  type Bus,
  createBatcher,
  header,
  type JsMsg,
  PermanentError,
  publishJson,
  receivedAtOf,
  runConsumer,
  type Settled,
} from "@switchboard/bus";
import { canaryEventOf, Headers, MessagingEvent, quoteLongIds, WebhookEntry } from "@switchboard/contracts";
import type { TokenCipher } from "@switchboard/crypto";
import type { Db } from "@switchboard/db";
import type { Logger } from "@switchboard/observability";
import type { Redis } from "ioredis";
import { createFairShare, type FairShareSettings } from "./fair-share";
import { createEntryReader } from "./large-entries";
import type { PageRouterMetrics } from "./metrics";
import { normaliseEntry } from "./normalise";
import { moveToOverflow, startOverflowDrain } from "./overflow";
import { createPageDirectory, followPageLifecycle, type RoutablePage } from "./page-directory";
import { createProfileLookup, type ProfileSettings } from "./profiles";
import { createUnroutedReplayer, parkEntry, type UnroutedReason } from "./unrouted";

export interface PageRouterSettings {
  /** REDIS_KEY_PREFIX: profiles, fair share, flood counters and replay locks live under it. */
  keyPrefix: string;
  /** The shared consumer of the webhooks stream (and the overflow drains). */
  consumer: {
    concurrency: number;
    /** Entries of the shared consumer held un-acknowledged across replicas (delayed ones are not held). */
    maxAckPending?: number;
    /** Attempts for a transient failure before the entry is dead-lettered. */
    maxTransientAttempts?: number;
    /** Beyond this an entry's handler is hung and given up (retried); longer than a slow profile lookup. */
    handlerTimeoutMs?: number;
  };
  /** The page directory and the entries waiting for their page. */
  pages: { cacheTtlMs: number; unroutedSweepIntervalMs: number };
  /** Contact profiles from the Graph API (see profiles.ts). */
  profiles: Omit<ProfileSettings, "keyPrefix">;
  /** Per-page rate and per-person flood flag; without it no page is shaped. */
  fairShare?: FairShareSettings;
  /** The webhook canary's page id: its entries go to the canary subject, never to the messaging events. */
  canaryPageId?: string;
}

export interface PageRouterDeps {
  bus: Bus;
  db: Db;
  redis: Redis;
  cipher: TokenCipher;
  log: Logger;
  metrics: PageRouterMetrics;
  settings: PageRouterSettings;
  /**
   * Throws while a dependency routing cannot go without does not answer (PostgreSQL): the consumer then
   * pauses instead of spending the entries' attempts (see runConsumer).
   */
  probeDependencies?: () => Promise<void>;
}

export interface RunningPageRouter {
  /** Stops taking entries, finishes the ones in flight and any replay in progress. */
  stop(): Promise<void>;
}

/**
 * The page-router: takes each raw entry from the webhooks stream (a durable consumer shared by every
 * replica), finds its PageConnection, turns its items into typed events and publishes them per page.
 * An entry no page can take is parked on the unrouted stream and comes back when its page is connected.
 */
export async function startPageRouter(deps: PageRouterDeps): Promise<RunningPageRouter> {
  const { bus, db, log, metrics, settings } = deps;
  const { streams, subjects, consumers } = bus.topology;
  const directory = createPageDirectory({ db, ttlMs: settings.pages.cacheTtlMs });
  const profiles = createProfileLookup({
    ...deps,
    directory,
    settings: { ...settings.profiles, keyPrefix: settings.keyPrefix },
  });
  const replayer = createUnroutedReplayer({ ...deps, keyPrefix: settings.keyPrefix });
  const fairShare = settings.fairShare
    ? createFairShare({ ...deps, keyPrefix: settings.keyPrefix, settings: settings.fairShare })
    : undefined;
  const entryData = createEntryReader(bus);
  const entryPrefix = subjects.webhookEntry("");
  const pageOfSubject = (subject: string) => subject.slice(entryPrefix.length) || "unknown";
  const overflowPrefix = subjects.pageOverflow("");
  /** The webhooks subject an entry came from, also for one drained from its page's overflow. */
  const originOf = (msg: JsMsg) =>
    msg.subject.startsWith(overflowPrefix)
      ? subjects.webhookEntry(msg.subject.slice(overflowPrefix.length))
      : msg.subject;
  // The events of entries routed side by side leave together: one socket write, acks awaited together;
  // one connection keeps each entry's events in order in the stream.
  const publisher = createBatcher<PublishItem, Array<{ duplicate: boolean }>>({
    maxSize: 256,
    maxWaitMs: 1,
    maxInFlight: 4,
    run: (items) =>
      Promise.all(
        items.map(async (item): Promise<Settled<Array<{ duplicate: boolean }>>> => {
          try {
            return { ok: true, value: await publishEvents(item) };
          } catch (error) {
            return { ok: false, error };
          }
        }),
      ),
  });
  const publishEvents = ({ pageId, events, traceId, receivedAt }: PublishItem) =>
    Promise.all(
      events.map((event) =>
        publishJson(bus.js, subjects.messagingEvent(pageId), event, {
          msgId: event.eventId,
          headers: {
            [Headers.traceId]: traceId,
            [Headers.receivedAt]: receivedAt,
            [Headers.pageId]: pageId,
            [Headers.eventType]: event.kind,
          },
        }),
      ),
    );

  const retriedOrDeadLettered = (outcome: string, page_id: string) => {
    if (outcome === "retried") metrics.entriesRetried.inc({ page_id });
    if (outcome === "dead_lettered") metrics.entriesDeadLettered.inc({ page_id });
  };

  const lifecycle = followPageLifecycle(
    { bus, log },
    {
      onEvent: async (event) => {
        directory.invalidate(event.pageId);
        metrics.pageCacheInvalidations.inc({ type: event.type });
        if (event.status === "active" && event.type !== "page.token_updated") {
          await replayer.replayPage(event.pageId);
        }
      },
      onReconnect: () => {
        directory.invalidate();
        metrics.pageCacheInvalidations.inc({ type: "reconnect" });
      },
    },
  );

  const park = async (msg: JsMsg, pageId: string, reason: UnroutedReason, detail?: string) => {
    await parkEntry(bus, msg, pageId, reason, detail, originOf(msg));
    metrics.entriesUnrouted.inc({ page_id: pageId, reason });
    log.warn({ pageId, reason, detail, seq: msg.seq }, "entry parked as unrouted");
  };

  const routeCanary = async (msg: JsMsg, entry: WebhookEntry) => {
    const receivedAt = receivedAtOf(msg);
    const event = canaryEventOf(entry, receivedAt, Date.now());
    if (!event) throw new PermanentError("entry for the canary page without a canary message");
    await publishJson(bus.js, subjects.canaryEvent(entry.id), event, { msgId: `canary:${event.canaryId}` });
  };

  // The routing stages, in order: decode → resolve page → normalise → enrich → publish. An entry a stage
  // cannot take further is parked (undecodable, unknown or disabled page) or ignored (no Messenger item).

  /** decode: the entry's bytes (inline or in the large-entries store) as a WebhookEntry, or parked. */
  const decode = async (msg: JsMsg, subjectPageId: string): Promise<WebhookEntry | undefined> => {
    const decoded = decodeEntry(await entryData(msg));
    if (decoded.ok) return decoded.entry;
    await park(msg, subjectPageId, "undecodable", decoded.detail);
    return undefined;
  };

  /** resolve page: the entry's PageConnection (`entry.id`), or parked until its page is connected. */
  const resolvePage = async (msg: JsMsg, entry: WebhookEntry): Promise<RoutablePage | undefined> => {
    const page = await directory.resolve(entry.id);
    // The ingress says which platform Meta delivered for (the body's `object`); entries parked before it
    // said so take their connection's.
    const platform = header(msg.headers, Headers.platform);
    if (!page) {
      await park(msg, entry.id, "unknown_page");
      // The page may have been connected while this entry was being parked: then replay it now.
      if (await db.pageConnection.findFirst({ where: { pageId: entry.id, status: { not: "disabled" } } })) {
        await replayer.replayPage(entry.id);
      }
      return undefined;
    }
    if (page.status === "disabled") {
      await park(msg, entry.id, "page_disabled");
      return undefined;
    }
    if (platform !== undefined && platform !== page.platform) {
      await park(msg, entry.id, "platform_mismatch", `a ${platform} entry for a ${page.platform} connection`);
      return undefined;
    }
    return page;
  };

  /** normalise: the entry's items as typed events of the page; none for feed changes and test pings. */
  const normalise = (msg: JsMsg, entry: WebhookEntry, page: RoutablePage): Normalised | undefined => {
    const receivedAt = Math.trunc(receivedAtOf(msg));
    const traceId = header(msg.headers, Headers.traceId) ?? `webhook-seq-${msg.seq}`;
    const events = normaliseEntry(entry, {
      pageId: page.pageId,
      companyId: page.companyId,
      platform: page.platform,
      traceId,
      receivedAt,
    });
    if (events.length > 0) return { events, traceId, receivedAt };
    const reason = entry.changes?.length ? "changes" : "empty";
    metrics.entriesIgnored.inc({ page_id: page.pageId, reason });
    log.info({ pageId: page.pageId, reason, traceId }, "entry has no messaging items");
    return undefined;
  };

  /** enrich: the fair share counts the entry's messages once; each message gets its contact's profile. */
  const enrich = async (msg: JsMsg, page: RoutablePage, { events }: Normalised, shared: boolean) => {
    // Side by side: the flood counters and the profile reads of the tick's entries share Redis writes.
    await Promise.all([
      fairShare?.account(msg, page.pageId, events, shared),
      ...events.map(async (event) => {
        if (event.kind !== "message") return;
        const { profile, status } = await profiles.profileFor(page, event.psid);
        event.profile = profile;
        event.profileStatus = status;
        metrics.profileLookups.inc({ page_id: page.pageId, status });
      }),
    ]);
  };

  /** publish: each event checked against the contracts, then published with the entries routed beside it. */
  const publish = async (page: RoutablePage, { events, traceId, receivedAt }: Normalised) => {
    for (const event of events) {
      const checked = MessagingEvent.safeParse(event);
      // A bug of ours, not a passing failure: retrying cannot help, the dead-letter stream keeps the entry.
      if (!checked.success) {
        throw new PermanentError(`normalised ${event.kind} event is invalid: ${checked.error.message}`);
      }
    }
    const acks = await publisher.add({ pageId: page.pageId, events, traceId, receivedAt });
    for (const [index, event] of events.entries()) {
      if (acks[index]!.duplicate) metrics.eventsDuplicate.inc({ page_id: page.pageId });
      else metrics.eventsRouted.inc({ page_id: page.pageId, kind: event.kind });
    }
    metrics.routingSeconds.observe(Math.max(0, Date.now() - receivedAt) / 1000);
    log.debug({ pageId: page.pageId, traceId, events: events.length }, "entry routed");
  };

  /** The stages, for an entry of the shared consumer and for one drained from an overflow alike. */
  const route = async (msg: JsMsg, subjectPageId: string, shared: boolean) => {
    const entry = await decode(msg, subjectPageId);
    if (!entry) return;
    if (settings.canaryPageId !== undefined && entry.id === settings.canaryPageId) {
      return routeCanary(msg, entry);
    }
    if (entry.id === DASHBOARD_TEST_ENTRY_ID && !entry.messaging?.length && !entry.standby?.length) {
      // The App Dashboard's "Test" button: a sample `changes` entry for page "0", which no page will ever own.
      metrics.entriesIgnored.inc({ page_id: entry.id, reason: "dashboard_test" });
      return;
    }
    const page = await resolvePage(msg, entry);
    if (!page) return;
    const normalised = normalise(msg, entry, page);
    if (!normalised) return;
    await enrich(msg, page, normalised, shared);
    await publish(page, normalised);
  };

  const overflow = fairShare
    ? startOverflowDrain({
        bus,
        log,
        metrics,
        fairShare,
        settings: {
          concurrency: Math.max(4, Math.ceil(settings.consumer.concurrency / 4)),
          maxPages: 256,
          pollIntervalMs: 500,
          idleStopMs: 30_000,
          metricPages: 20,
          ...(settings.consumer.maxTransientAttempts
            ? { maxTransientAttempts: settings.consumer.maxTransientAttempts }
            : {}),
          ...(settings.consumer.handlerTimeoutMs
            ? { handlerTimeoutMs: settings.consumer.handlerTimeoutMs }
            : {}),
        },
        ...(deps.probeDependencies ? { probeDependencies: deps.probeDependencies } : {}),
        route,
        onOutcome: retriedOrDeadLettered,
      })
    : undefined;

  const handle = async (msg: JsMsg) => {
    const subjectPageId = pageOfSubject(msg.subject);
    metrics.entriesReceived.inc({ page_id: subjectPageId });
    // Over its share while other pages wait, the entry moves to its page's overflow (decided before
    // decoding: a flood's excess must cost little) and holds no slot of this shared consumer.
    let shared = false;
    if (fairShare && subjectPageId !== settings.canaryPageId) {
      const admission = await fairShare.admit(msg, subjectPageId, overflow?.overflowing(subjectPageId));
      if (admission.overflow) {
        await moveToOverflow(bus, msg, subjectPageId);
        overflow?.drainPage(subjectPageId);
        return;
      }
      shared = admission.shared;
    }
    await route(msg, subjectPageId, shared);
  };

  const consumer = await runConsumer({
    js: bus.js,
    jsm: bus.jsm,
    topology: bus.topology,
    stream: streams.webhooks.name,
    durable: consumers.pageRouter,
    filterSubject: subjects.webhookEntries,
    stage: "page-router",
    log,
    concurrency: settings.consumer.concurrency,
    ...(settings.consumer.maxTransientAttempts
      ? { maxTransientAttempts: settings.consumer.maxTransientAttempts }
      : {}),
    ...(settings.consumer.maxAckPending ? { maxAckPending: settings.consumer.maxAckPending } : {}),
    ...(settings.consumer.handlerTimeoutMs ? { handlerTimeoutMs: settings.consumer.handlerTimeoutMs } : {}),
    ...(deps.probeDependencies ? { probeDependencies: deps.probeDependencies } : {}),
    handle,
    onOutcome: (outcome, msg) => retriedOrDeadLettered(outcome, pageOfSubject(msg.subject)),
  });

  const sweep = () =>
    replayer.sweep().catch((err: unknown) => log.warn({ err }, "unrouted sweep failed, will try again"));
  void sweep();
  const sweepTimer = setInterval(sweep, settings.pages.unroutedSweepIntervalMs);
  sweepTimer.unref();

  return {
    async stop() {
      clearInterval(sweepTimer);
      lifecycle.stop();
      await consumer.stop();
      await overflow?.stop();
      await replayer.idle();
    },
  };
}

/** An entry's typed events, as the normalise stage hands them on. */
interface Normalised {
  events: MessagingEvent[];
  traceId: string;
  receivedAt: number;
}

interface PublishItem {
  pageId: string;
  events: MessagingEvent[];
  traceId: string;
  receivedAt: number;
}

type Decoded = { ok: true; entry: WebhookEntry } | { ok: false; detail: string };

const DASHBOARD_TEST_ENTRY_ID = "0";

function decodeEntry(data: Uint8Array): Decoded {
  let json: unknown;
  try {
    json = JSON.parse(quoteLongIds(new TextDecoder().decode(data)));
  } catch {
    return { ok: false, detail: "not JSON" };
  }
  const parsed = WebhookEntry.safeParse(json);
  if (!parsed.success) {
    return {
      ok: false,
      detail: parsed.error.issues.map((i) => `${i.path.join(".") || "entry"} ${i.message}`).join("; "),
    };
  }
  return { ok: true, entry: parsed.data };
}
