import { ALL_SERVICES, type ServiceName } from "@switchboard/local-system";
import type { TestBed } from "./bed";
import { broadcast, type Ledger, type LoadOptions } from "./load";

export interface Scenario {
  name: string;
  /** What it does, for the report. */
  fault: string;
  /** Applied a third of the way into the load; resolves when the fault is in place (or over). */
  inject(bed: TestBed, ledger: Ledger): Promise<void>;
  /** Applied two thirds of the way in (a fault "for good" heals only after the checks). */
  heal(bed: TestBed): Promise<void>;
  /** After the checks, put the bed back for the next scenario. */
  restore?(bed: TestBed): Promise<void>;
  load?: Partial<LoadOptions>;
  /** In `pnpm test`'s short run. */
  quick?: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function forEachPage(bed: TestBed, run: (pageId: string) => Promise<unknown>) {
  for (let i = 0; i < bed.pageIds.length; i += 25) await Promise.all(bed.pageIds.slice(i, i + 25).map(run));
}

const injectGraph = (bed: TestBed, error: Record<string, unknown>) =>
  forEachPage(bed, (pageId) => bed.control(`/pages/${pageId}/errors`, error));
const clearGraph = (bed: TestBed) =>
  forEachPage(bed, (pageId) => bed.control(`/pages/${pageId}/errors`, undefined, "DELETE"));

async function restartAll(bed: TestBed, app: ServiceName) {
  const count = bed.system.replicas[app]?.length ?? 0;
  await Promise.all(Array.from({ length: count }, (_, i) => bed.system.startReplica(app, i)));
}

export const scenarios: Scenario[] = [
  {
    name: "baseline",
    fault: "none: the load alone",
    inject: async () => undefined,
    heal: async () => undefined,
  },
  {
    name: "kill -9 one replica of each service",
    fault:
      "SIGKILL the second replica of ingress, page-router, message-service, subscription-service and webhook-dispatcher; restarted at heal",
    quick: true,
    async inject(bed) {
      for (const app of ALL_SERVICES) await bed.system.killReplica(app, 1);
    },
    async heal(bed) {
      await Promise.all(ALL_SERVICES.map((app) => bed.system.startReplica(app, 1)));
    },
  },
  {
    name: "kill -9 the webhook-dispatcher mid-delivery",
    fault:
      "SIGKILL both webhook-dispatcher replicas while deliveries are in flight (the receiver answers after 50 ms); started again at heal",
    quick: true,
    async inject(bed) {
      const before = bed.receiver.accepted.length;
      // Wait for traffic at the receiver, so attempts are in flight when the replicas die.
      for (let i = 0; i < 100 && bed.receiver.accepted.length === before; i++) await sleep(50);
      await Promise.all([
        bed.system.killReplica("webhook-dispatcher", 0),
        bed.system.killReplica("webhook-dispatcher", 1),
      ]);
    },
    heal: (bed) => restartAll(bed, "webhook-dispatcher"),
  },
  {
    name: "kill -9 each service entirely, then restart it",
    fault: "one service after the other: SIGKILL both replicas, 3 s down, both started again",
    async inject(bed) {
      for (const app of ALL_SERVICES) {
        await Promise.all([bed.system.killReplica(app, 0), bed.system.killReplica(app, 1)]);
        await sleep(3000);
        await restartAll(bed, app);
      }
    },
    heal: async () => undefined,
  },
  {
    name: "kill -9 one NATS node, restart it",
    fault: "SIGKILL NATS node n2 (R3 streams keep a quorum of two); started again at heal",
    quick: true,
    inject: (bed) => bed.cluster.nodes[1]!.kill(),
    heal: (bed) => bed.cluster.nodes[1]!.start(),
  },
  {
    name: "all Redis down for 10 s",
    fault: "SIGKILL all three Redis nodes, 10 s, started again (empty)",
    async inject(bed) {
      await Promise.all(bed.redis.nodes.map((n) => n.kill()));
      await sleep(10_000);
      await Promise.all(bed.redis.nodes.map((n) => n.start()));
    },
    heal: async () => undefined,
  },
  {
    name: "lose one Redis node for good",
    fault: "SIGKILL Redis node 1 of 3 (the first in REDIS_URL); not back until after the checks",
    inject: (bed) => bed.redis.nodes[0]!.kill(),
    heal: async () => undefined,
    restore: (bed) => bed.redis.nodes[0]!.start(),
  },
  {
    name: "PostgreSQL stopped for 30 s",
    fault: "pg_ctl stop -m immediate on the bed's own PostgreSQL, 30 s, started again",
    async inject(bed) {
      await bed.postgres.kill();
      await sleep(30_000);
      await bed.postgres.start();
    },
    heal: async () => undefined,
  },
  {
    name: "Graph API slow (9 s per call)",
    fault: "every Graph call of every page answers after 9 s (timeout is 10 s) until heal",
    inject: (bed) => injectGraph(bed, { delayMs: 9000 }),
    heal: (bed) => clearGraph(bed),
  },
  {
    name: "Graph API failing (5xx, rate limits)",
    fault:
      "every page's Graph calls answer 500 (code 2) 3 times, then rate limits (code 613) 2 times, until heal",
    async inject(bed) {
      await injectGraph(bed, { code: 2, status: 500, times: 3 });
      await injectGraph(bed, { code: 613, times: 2 });
    },
    heal: (bed) => clearGraph(bed),
  },
  {
    name: "a page flooded with 10x its share",
    fault:
      "one page receives 10x PAGE_MESSAGE_RATE (50/s over its 5/s) on top of the load from fault to heal; its excess is delayed, never dropped",
    inject: async () => undefined,
    heal: async () => undefined,
    load: { floodPerSecond: 50 },
  },
  {
    name: "broadcast of 1,000 messages to one page",
    fault: "1,000 sends queued at once to one page's people (SEND_RATE_PER_PAGE=20: about 50 s)",
    inject: (bed, ledger) => broadcast(bed, bed.pageIds[1]!, 1000, ledger),
    heal: async () => undefined,
  },
];

/** The short subset `pnpm test` runs, with a smaller broadcast. */
export function quickScenarios(): Scenario[] {
  return scenarios.filter((s) => s.quick);
}
