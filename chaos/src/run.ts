import { allReady, type TestBed } from "./bed";
import { type Ledger, type LoadOptions, runLoad } from "./load";
import type { Scenario } from "./scenarios";
import { type ScenarioResult, verifyScenario } from "./verify";

export interface RunOptions {
  load: LoadOptions;
  /** How long a scenario may take to recover after its heal before it fails. */
  recoveryTimeoutMs?: number;
  log?: (line: string) => void;
}

/**
 * One scenario: the load runs; a third of the way in the fault is injected, two thirds in it is healed;
 * then the bed must recover and every guarantee is checked against what was sent.
 */
export async function runScenario(
  bed: TestBed,
  scenario: Scenario,
  options: RunOptions,
): Promise<ScenarioResult> {
  const log = options.log ?? (() => undefined);
  const ledger: Ledger = { incoming: new Map(), sends: [], webhookRetries: 0, sendRetries: 0 };
  let faultActive = false;
  const load = { ...options.load, ...scenario.load, floodActive: () => faultActive };
  if (load.floodPerSecond) load.floodPageId = bed.pageIds[0]!;
  const seconds = load.seconds;
  log(`▶ ${scenario.name}: ${scenario.fault}`);
  const loading = runLoad(bed, load, ledger);
  await sleep((seconds * 1000) / 3);
  log("  fault injected");
  faultActive = true;
  await scenario.inject(bed, ledger);
  const untilHeal = Math.max(0, (seconds * 2000) / 3 - (seconds * 1000) / 3);
  await sleep(untilHeal);
  await scenario.heal(bed);
  faultActive = false;
  const healedAt = Date.now();
  const ready = untilReady(bed).then(() => Date.now());
  log("  healed; waiting for the load to finish and the bed to recover");
  await loading;
  const loadEndedAt = Date.now();
  const result = await verifyScenario(bed, scenario.name, ledger, loadEndedAt, options.recoveryTimeoutMs);
  result.readySeconds = Math.round((Math.max(healedAt, await ready) - healedAt) / 100) / 10;
  await scenario.restore?.(bed);
  log(`  ${result.ok ? "✓" : "✗"} ${result.problems.join("; ") || "every guarantee held"}`);
  return result;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves once every replica answers /readyz again (polled every half second, for at most 5 minutes). */
async function untilReady(bed: TestBed) {
  const deadline = Date.now() + 300_000;
  while (!(await allReady(bed)) && Date.now() < deadline) await sleep(500);
}

export function resultTable(results: ScenarioResult[]): string {
  const header =
    "| scenario | sent | stored | duplicates | sends sent | double sends | out of order | dead letters | webhooks delivered (again) | ready after heal (s) | drained after load (s) | result |";
  const rule = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|";
  const rows = results.map(
    (r) =>
      `| ${r.scenario} | ${r.sent} | ${r.stored} | ${r.duplicates} | ${r.sendsSent}/${r.sendsQueued} | ${r.doubleSends} | ${r.outOfOrder} | ${r.deadLetters} | ${r.webhooksDelivered}/${r.sent} (${r.webhooksRedelivered}) | ${r.readySeconds} | ${Number.isNaN(r.recoverySeconds) ? "—" : r.recoverySeconds} | ${r.ok ? "pass" : `FAIL: ${r.problems.join("; ")}`} |`,
  );
  return [header, rule, ...rows].join("\n");
}
