import { writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { repoRoot } from "@switchboard/local-system";
import { startTestBed } from "./bed";
import { resultTable, runScenario } from "./run";
import { quickScenarios, scenarios } from "./scenarios";
import type { ScenarioResult } from "./verify";

/**
 * `pnpm chaos [--quick] [--only <name part>]`: the production-shaped test bed, every fault scenario under
 * load, a table of what held. Exits non-zero on any loss, duplicate, double send or dead letter.
 */
const args = process.argv.slice(2);
const quick = args.includes("--quick");
const only = args.includes("--only") ? args[args.indexOf("--only") + 1] : undefined;
const chosen = (only ? scenarios : quick ? quickScenarios() : scenarios).filter(
  (s) => !only || s.name.includes(only),
);
const started = new Date();
const log = (line: string) => console.log(line);

log(
  `chaos: ${chosen.length} scenarios${quick ? " (quick)" : ""} — 3 NATS nodes (R3), 3 Redis nodes, private PostgreSQL, 2 replicas of every service`,
);
const bed = await startTestBed({
  pages: quick ? 20 : 100,
  peoplePerPage: 4,
  logDir: join(repoRoot, ".chaos-logs"),
  env: {
    PAGE_MESSAGE_RATE: "5",
    PAGE_MESSAGE_BURST: "20",
    SEND_RATE_PER_PAGE: "20",
    SEND_STALE_AFTER: "1m",
    SEND_SWEEP_INTERVAL: "15s",
  },
});
const results: ScenarioResult[] = [];
try {
  for (const scenario of chosen) {
    results.push(
      await runScenario(bed, scenario, {
        load: { messagesPerSecond: quick ? 15 : 30, sendsPerSecond: quick ? 2 : 4, seconds: quick ? 15 : 45 },
        log,
      }),
    );
  }
} finally {
  await bed.stop();
}
const table = resultTable(results);
log(`\n${table}\n`);
const machine = `${cpus().length} cores (${cpus()[0]?.model ?? "cpu"}), ${Math.round(totalmem() / 1024 ** 3)} GiB, Node ${process.version}`;
const report = `# Chaos: the production-shaped test bed

Run on ${started.toISOString().slice(0, 10)} (\`pnpm chaos${quick ? " --quick" : ""}\`, ${Math.round((Date.now() - started.getTime()) / 1000)} s) on ${machine}.

The bed: a 3-node NATS JetStream cluster (R3 streams, created by \`pnpm bus:migrate\`), three independent Redis
nodes (\`REDIS_URL\` with three URLs), a private PostgreSQL (\`initdb\`/\`pg_ctl\`), two replicas of every service
(the ingress behind a balancer, as behind a Kubernetes Service), and the fake Meta sending echoes as Meta does.
Each scenario runs signed webhooks for every page (incoming messages, deliveries, reads, reactions) and sends
through \`/v1\` at the same time; the fault comes a third of the way in and is healed two thirds in. Meta's
retries are played (a POST is retried until it gets a 200), so "sent" counts what Meta got a 200 for.

After every scenario: every message Meta sent is stored exactly once under its page; every API send reached
the Send API exactly once (the fake Meta's log, by \`metadata\`) and its row is sent; sends to one person left
in queue order; no status went backwards; the dead-letter and unrouted streams are empty; every page is
subscribed; every stream is still R3. "Ready after heal" is the time from the heal until every replica
answers \`/readyz\` again; "drained after load" the time from the end of the load until everything Meta got a
200 for is stored and every queued send is settled (a scenario fails past 240 s).

${table}
`;
writeFileSync(join(repoRoot, "docs", quick ? "chaos-quick.md" : "chaos.md"), report);
const failed = results.filter((r) => !r.ok);
if (failed.length > 0) {
  console.error(`${failed.length} scenario(s) failed: ${failed.map((r) => r.scenario).join(", ")}`);
  process.exit(1);
}
