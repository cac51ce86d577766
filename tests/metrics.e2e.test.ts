import { queriedMetricNames } from "@switchboard/observability-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningConsole, startConsole } from "./console-process";
import { ALL_SERVICES, type System, startSystem } from "./harness";

/** Metric names on a /metrics page, with the series names a histogram or summary adds. */
function exportedNames(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const [, name, type] of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(name!);
    if (type === "histogram")
      for (const suffix of ["_bucket", "_sum", "_count"]) names.add(`${name}${suffix}`);
    if (type === "summary") for (const suffix of ["_sum", "_count"]) names.add(`${name}${suffix}`);
  }
  return names;
}

describe("metrics the alerts and the dashboard query", () => {
  let system: System;
  let operatorConsole: RunningConsole;

  beforeAll(async () => {
    // With the webhook canary on, so its metrics are there too.
    system = await startSystem({ CANARY_PAGE_ID: "999000000000001" }, { apps: ALL_SERVICES });
    operatorConsole = await startConsole(system, {
      CANARY_INGRESS_URL: `${system.ingressUrl}/webhooks/facebook`,
    });
  });

  afterAll(async () => {
    await operatorConsole?.stop();
    await system?.stop();
  });

  it("are each exported by a running service", async () => {
    const urls = [...ALL_SERVICES.map((name) => system.services[name].url), operatorConsole.url];
    const exported = new Map<string, string[]>();
    for (const url of urls) {
      const res = await fetch(`${url}/metrics`);
      expect(res.status, url).toBe(200);
      for (const name of exportedNames(await res.text()))
        exported.set(name, [...(exported.get(name) ?? []), url]);
    }
    const queried = queriedMetricNames();
    expect(queried.length).toBeGreaterThan(20);
    const missing = queried.filter((name) => !exported.has(name));
    expect(missing, `queried by alerts.yaml or dashboard.json but exported by no service`).toEqual([]);
  });
});
