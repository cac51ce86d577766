import { applyMigrations, createDb, type Db } from "@switchboard/db";
import { type FakeMetaControl, fakeMetaControl } from "@switchboard/fake-meta";
import {
  ALL_SERVICES,
  type LocalSystem,
  SERVICES,
  type ServiceName,
  type ServiceProcess,
  type SystemApp,
  startLocalSystem,
} from "@switchboard/local-system";
import { testServices, uniqueId } from "@switchboard/testing";

export { freePort } from "@switchboard/local-system";
export { ALL_SERVICES, SERVICES };

/**
 * The whole system as processes, built as in production (`node dist/main.js`), on the real local
 * services, isolated by its own database, bus namespace and Redis key prefix. A process that exits
 * while starting fails the test at once, with what it printed.
 */
export interface System extends LocalSystem<Db> {
  services: Record<SystemApp, ServiceProcess>;
  fakeMetaUrl: string;
  /** The fake Meta's control API (`/_fake<path>`), with its control token. */
  fakeMeta: FakeMetaControl;
  ingressUrl: string;
  appSecret: string;
}

export async function startSystem(
  extraEnv: Record<string, string> = {},
  { apps = SERVICES }: { apps?: readonly ServiceName[] } = {},
): Promise<System> {
  const system = await startLocalSystem({
    apps,
    stores: testServices(),
    migrate: applyMigrations,
    connectDb: (url) => createDb(url),
    runId: uniqueId("e"),
    databasePrefix: "sb_test_",
    env: extraEnv,
  });
  return {
    ...system,
    services: system.processes as Record<SystemApp, ServiceProcess>,
    fakeMetaUrl: system.urls["fake-meta"],
    fakeMeta: fakeMetaControl(system.urls["fake-meta"], system.fakeMetaControlToken),
    ingressUrl: system.urls.ingress,
    appSecret: system.env.FB_APP_SECRET!,
  };
}
