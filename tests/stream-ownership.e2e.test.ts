import { applyMigrations, createDb, type Db } from "@switchboard/db";
import {
  ALL_SERVICES,
  deleteNamespaceStreams,
  freePort,
  type LocalSystem,
  migrateBus,
  type NatsCluster,
  startLocalSystem,
  startNatsCluster,
  startServiceProcess,
  uniqueId,
} from "@switchboard/local-system";
import { testServices } from "@switchboard/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPERATOR_TOKEN, startConsole } from "./console-process";
import type { System } from "./harness";

/**
 * On a 3-node cluster, streams provisioned at R3 stay R3 whatever runs against them: every service
 * starting (twice), every operator command and console action. Before `pnpm bus:migrate` owned the
 * streams, any process connecting without NATS_STREAM_REPLICAS scaled every stream down to R1.
 */
describe("stream configuration has one owner (3-node NATS cluster)", () => {
  let cluster: NatsCluster;
  let system: LocalSystem<Db>;

  beforeAll(async () => {
    cluster = await startNatsCluster();
    system = await startLocalSystem({
      stores: { ...testServices(), natsUrl: cluster.url },
      migrate: applyMigrations,
      connectDb: (url) => createDb(url),
      runId: uniqueId("own"),
      databasePrefix: "sb_test_",
      apps: ALL_SERVICES,
      env: { NATS_STREAM_REPLICAS: "3" },
    });
  }, 120_000);

  afterAll(async () => {
    await system?.stop();
    await cluster?.stop();
  });

  const replicasOfRun = async () =>
    Object.fromEntries(
      Object.entries(await cluster.streamReplicas()).filter(([name]) =>
        name.startsWith(system.runId.toUpperCase()),
      ),
    );

  it("provisions every stream at R3", async () => {
    const replicas = await replicasOfRun();
    expect(Object.keys(replicas)).toHaveLength(9);
    expect(new Set(Object.values(replicas))).toEqual(new Set([3]));
  });

  it("stays R3 after every CLI command and console action, run without NATS_STREAM_REPLICAS", async () => {
    const { NATS_STREAM_REPLICAS: _omitted, ...operatorEnv } = system.env;
    const cli = (args: string[], stdin?: string) => system.cli(args, stdin);
    await fetch(`${system.urls["fake-meta"]}/_fake/pages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ pageId: "770000000000001", token: "EAAB-own", name: "Own" }),
    });
    const commands: string[][] = [
      ["pages", "connect", "--page-id", "770000000000001", "--name", "Own", "--company", "own"],
      ["pages", "list"],
      ["dlq", "list"],
      ["unrouted", "list"],
      ["unrouted", "replay"],
      ["subscriptions", "check"],
      ["pages", "rotate-tokens"],
    ];
    for (const args of commands) {
      const result = await cli(args, args[1] === "connect" ? "EAAB-own" : undefined);
      expect(result.stderr, args.join(" ")).not.toMatch(/streams missing/);
      expect(await replicasOfRun(), args.join(" ")).not.toContain(1);
      expect(new Set(Object.values(await replicasOfRun()))).toEqual(new Set([3]));
    }

    const consoleProcess = await startConsole({ ...system, env: operatorEnv } as unknown as System, {
      NATS_STREAM_REPLICAS: "",
    });
    try {
      const auth = { authorization: `Bearer ${OPERATOR_TOKEN}` };
      expect((await fetch(`${consoleProcess.url}/`, { headers: auth })).status).toBe(200);
      for (const action of ["resubscribe", "replay-unrouted"]) {
        await fetch(`${consoleProcess.url}/pages/770000000000001/${action}`, {
          method: "POST",
          headers: auth,
        });
      }
    } finally {
      await consoleProcess.stop();
    }
    expect(new Set(Object.values(await replicasOfRun()))).toEqual(new Set([3]));
  }, 120_000);

  it("ten service processes started with the migration on a new namespace wait for their streams instead of crash-looping", async () => {
    const namespace = uniqueId("fresh");
    const env = { ...system.env, BUS_NAMESPACE: namespace, REDIS_KEY_PREFIX: `${namespace}:` };
    const starting = ALL_SERVICES.flatMap((app) =>
      [0, 1].map(async () =>
        startServiceProcess(app, { env, port: await freePort(), readyTimeoutMs: 90_000 }),
      ),
    );
    // The migration job runs beside them, a little later, as a Kubernetes rollout does.
    await new Promise((r) => setTimeout(r, 1500));
    await migrateBus({ ...env, NATS_STREAM_REPLICAS: "3" });
    const processes = await Promise.all(starting);
    try {
      for (const p of processes) expect(p.process.exitCode, p.name).toBeNull();
      const replicas = Object.entries(await cluster.streamReplicas()).filter(([name]) =>
        name.startsWith(namespace.toUpperCase()),
      );
      expect(replicas).toHaveLength(9);
      expect(new Set(replicas.map(([, r]) => r))).toEqual(new Set([3]));
    } finally {
      await Promise.all(processes.map((p) => p.stop()));
      await deleteNamespaceStreams(cluster.url, namespace);
    }
  }, 150_000);
});
