import {
  type Bus,
  connectBus,
  deleteStreams,
  listStored,
  publishJson,
  type RunningConsumer,
} from "@switchboard/bus";
import { conversationKey, type DomainEvent, type MessagingEvent } from "@switchboard/contracts";
import { createTokenCipher, generateTokenKey } from "@switchboard/crypto";
import { applyMigrations, createDb, type Db } from "@switchboard/db";
import { createLogger, createMetricsRegistry, type Registry } from "@switchboard/observability";
import { closeRedisNodes, connectRedisNodes } from "@switchboard/redis-nodes";
import {
  createTestDatabase,
  deleteRedisKeys,
  eventually,
  type TestDatabase,
  testServices,
  uniqueId,
} from "@switchboard/testing";
import type { Redis } from "ioredis";
import { type ConversationLock, createConversationLock } from "./conversation-lock";
import { startMessagingConsumer } from "./messaging-consumer";
import { createMessageMetrics } from "./metrics";

export const log = createLogger({
  service: "message-service-test",
  level: process.env.TEST_LOG_LEVEL ?? "silent",
});

export interface ServiceInstance {
  bus: Bus;
  redis: Redis[];
  lock: ConversationLock;
  consumer: RunningConsumer;
  registry: Registry;
  stop(): Promise<void>;
}

export interface InstanceSettings {
  lockRetryDelayMs?: number;
  maxLockAttempts?: number;
  lockWaitRetries?: number;
  concurrency?: number;
  /** Another database or Redis than the world's: failure tests point an instance at one they break. */
  databaseUrl?: string;
  redisUrl?: string;
}

/**
 * An isolated world per test file (own database, bus namespace and Redis key prefix) in which tests start
 * message-service instances built exactly as main.ts builds them, over the real services.
 */
export async function createTestWorld() {
  const services = testServices();
  const database: TestDatabase = await createTestDatabase(applyMigrations);
  const namespace = uniqueId("ms");
  const keyPrefix = `${uniqueId("k")}:`;
  const db: Db = createDb(database.url);
  const bus = await connectBus({
    streams: "provision",
    servers: [services.natsUrl],
    name: "test-publisher",
    namespace,
    log,
  });
  const instances: ServiceInstance[] = [];
  const extraRedis: Redis[] = [];

  async function startInstance(settings: InstanceSettings = {}): Promise<ServiceInstance> {
    const registry = createMetricsRegistry("message-service");
    const instanceBus = await connectBus({
      streams: "provision",
      servers: [services.natsUrl],
      name: "message-service",
      namespace,
      log,
    });
    const redis = connectRedisNodes([settings.redisUrl ?? services.redisUrl], log, {
      connectionName: "message-service",
    });
    const lock = createConversationLock({
      redis,
      keyPrefix,
      ttlMs: 5000,
      waitRetries: settings.lockWaitRetries ?? 2,
      waitDelayMs: 20,
      retryLaterDelayMs: settings.lockRetryDelayMs ?? 200,
      log,
      registry,
    });
    // Each instance has its own pool, as separate replicas do.
    const instanceDb = createDb(settings.databaseUrl ?? database.url, { poolSize: 5 });
    const consumer = await startMessagingConsumer({
      bus: instanceBus,
      db: instanceDb,
      lock,
      log,
      metrics: createMessageMetrics(registry),
      concurrency: settings.concurrency ?? 16,
      maxLockAttempts: settings.maxLockAttempts ?? 8,
      appId: OUR_APP_ID,
      cipher: TEST_CIPHER,
    });
    let stopping: Promise<void> | undefined;
    const instance: ServiceInstance = {
      bus: instanceBus,
      redis,
      lock,
      consumer,
      registry,
      // Once only: a test may stop an instance before the world's close stops every instance.
      stop() {
        stopping ??= (async () => {
          await consumer.stop();
          await instanceBus.drain();
          await closeRedisNodes(redis);
          await instanceDb.$disconnect();
        })();
        return stopping;
      },
    };
    instances.push(instance);
    return instance;
  }

  return {
    db,
    bus,
    keyPrefix,
    namespace,
    startInstance,
    /** A Redis client of this run, for tests that hold a lock themselves. */
    redisNode() {
      const [client] = connectRedisNodes([services.redisUrl], log, {
        connectionName: "message-service-test",
      });
      if (!client) throw new Error("no redis client");
      extraRedis.push(client);
      return client;
    },
    /** Publishes as the page-router does (`Nats-Msg-Id` = event id) unless a test wants a real duplicate. */
    publish(event: MessagingEvent, msgId: string | null = event.eventId) {
      return publishJson(
        bus.js,
        bus.topology.subjects.messagingEvent(event.pageId),
        event,
        msgId ? { msgId } : {},
      );
    },
    /** Resolves once the service's consumer has nothing pending or unacknowledged. */
    async settled() {
      const { name } = bus.topology.streams.events;
      await eventually(
        async () => {
          const info = await bus.jsm.consumers.info(name, bus.topology.consumers.messageService);
          return info.num_pending === 0 && info.num_ack_pending === 0;
        },
        { timeoutMs: 30_000, message: "consumer settled" },
      );
    },
    async domainEvents(): Promise<DomainEvent[]> {
      const stored = await listStored(bus.js, bus.jsm, bus.topology.streams.domain.name);
      return stored.map((m) => JSON.parse(new TextDecoder().decode(m.data)) as DomainEvent);
    },
    async deadLetters() {
      return listStored(bus.js, bus.jsm, bus.topology.streams.deadLetter.name);
    },
    async close() {
      await Promise.allSettled(instances.map((i) => i.stop()));
      await closeRedisNodes(extraRedis);
      await deleteStreams(bus.jsm, bus.topology);
      await deleteRedisKeys(services.redisUrl, keyPrefix);
      await bus.drain();
      await db.$disconnect();
      await database.drop();
    },
  };
}
export type TestWorld = Awaited<ReturnType<typeof createTestWorld>>;

/** The service's TOKEN_ENCRYPTION_KEYS in the test world. */
export const TEST_CIPHER = createTokenCipher(generateTokenKey("test-world"));

/** The app id the test world's service takes as its own (`FB_APP_ID`). */
export const OUR_APP_ID = "100000000000001";

let sequence = 0;
const base = (pageId: string, psid: string, timestamp: number) => ({
  eventId: `evt-${uniqueId("")}-${++sequence}`,
  pageId,
  companyId: "company-1",
  platform: "messenger" as const,
  standby: false,
  psid,
  conversationKey: conversationKey(pageId, psid),
  timestamp,
  traceId: uniqueId("trace"),
  receivedAt: timestamp,
  raw: { timestamp },
});

/** Typed messaging events as the page-router publishes them. */
export const events = {
  message(
    pageId: string,
    psid: string,
    mid: string,
    timestamp: number,
    text = `hello ${mid}`,
  ): MessagingEvent {
    return {
      ...base(pageId, psid, timestamp),
      kind: "message",
      mid,
      text,
      attachments: [],
      quickReplyPayload: null,
      replyToMid: null,
      replyToStory: null,
      unsupported: false,
      referral: null,
      profile: { firstName: "Ada", lastName: "Lovelace", profilePicUrl: null, name: null, username: null },
      profileStatus: "fetched",
    };
  },
  echo(
    pageId: string,
    psid: string,
    mid: string,
    timestamp: number,
    metadata: string | null = null,
  ): MessagingEvent {
    return {
      ...base(pageId, psid, timestamp),
      kind: "echo",
      mid,
      text: `echo ${mid}`,
      attachments: [],
      appId: metadata ? "100000000000001" : "263902037430900",
      metadata,
    };
  },
  delivery(pageId: string, psid: string, watermark: number, mids: string[] = []): MessagingEvent {
    return { ...base(pageId, psid, watermark), kind: "delivery", watermark, mids };
  },
  read(pageId: string, psid: string, watermark: number): MessagingEvent {
    return { ...base(pageId, psid, watermark), kind: "read", watermark };
  },
  reaction(
    pageId: string,
    psid: string,
    targetMid: string,
    timestamp: number,
    action: "react" | "unreact",
    emoji = "❤",
  ): MessagingEvent {
    return {
      ...base(pageId, psid, timestamp),
      kind: "reaction",
      action,
      reaction: action === "react" ? "love" : null,
      emoji: action === "react" ? emoji : null,
      targetMid,
    };
  },
  edit(
    pageId: string,
    psid: string,
    mid: string,
    numEdit: number,
    text: string,
    timestamp: number,
  ): MessagingEvent {
    return {
      ...base(pageId, psid, timestamp),
      eventId: `${pageId}:edit:${mid}:${numEdit}`,
      kind: "edit",
      mid,
      text,
      numEdit,
    };
  },
  unsend(pageId: string, psid: string, mid: string, timestamp: number): MessagingEvent {
    return { ...base(pageId, psid, timestamp), eventId: `${pageId}:unsend:${mid}`, kind: "unsend", mid };
  },
  threadControl(
    pageId: string,
    psid: string,
    action: "pass" | "take" | "request",
    newOwnerAppId: string | null,
    timestamp: number,
  ): MessagingEvent {
    return {
      ...base(pageId, psid, timestamp),
      eventId: `${pageId}:thread_control:${psid}:${action}:${timestamp}`,
      kind: "thread_control",
      action,
      newOwnerAppId: action === "request" ? null : newOwnerAppId,
      previousOwnerAppId: null,
      requestedOwnerAppId: action === "request" ? newOwnerAppId : null,
      metadata: null,
    };
  },
  policy(
    pageId: string,
    action: "block" | "unblock" | "warning",
    timestamp: number,
    reason = "spam",
  ): MessagingEvent {
    return {
      ...base(pageId, "unknown", timestamp),
      eventId: `${pageId}:policy:${action}:${timestamp}`,
      kind: "policy_enforcement",
      action,
      reason,
    };
  },
  referral(pageId: string, psid: string, timestamp: number): MessagingEvent {
    return { ...base(pageId, psid, timestamp), kind: "referral", referral: { ref: "ad-42", source: "ADS" } };
  },
};
