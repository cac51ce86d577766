import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startBenchSystem } from "./bench-system";
import { benchBroker } from "./broker-bench";
import { benchContention } from "./contention-bench";
import { benchEndToEnd, pipelinePids } from "./e2e-bench";
import { benchFairness, benchMetricsAtScale, benchSoloPage } from "./fairness-bench";
import { benchIngress } from "./ingress-bench";
import { machineFacts } from "./machine";
import { type BenchReport, writeReport } from "./report";
import { machineCpu, sampleResources } from "./resources";
import { root } from "./system";

const PARTS = ["ingress", "broker", "e2e", "contention", "fairness", "metrics"] as const;
type Part = (typeof PARTS)[number];

const { values } = parseArgs({
  // `pnpm bench --quick` arrives as `-- --quick`.
  args: process.argv.slice(2).filter((arg) => arg !== "--"),
  options: {
    quick: { type: "boolean", default: false },
    only: { type: "string" },
    "no-build": { type: "boolean", default: false },
    "cpu-prof": { type: "boolean", default: false },
  },
});

const quick = values.quick ?? false;
const parts = new Set<Part>(
  values.only
    ? (values.only.split(",").filter((p) => (PARTS as readonly string[]).includes(p)) as Part[])
    : PARTS,
);

function build() {
  const apps = ["ingress", "page-router", "message-service", "fake-meta"];
  const result = spawnSync(
    "pnpm",
    [
      "exec",
      "turbo",
      "run",
      "build",
      "--output-logs=errors-only",
      ...apps.map((a) => `--filter=@switchboard/${a}`),
    ],
    { cwd: root, stdio: "inherit" },
  );
  if (result.status !== 0) throw new Error("build failed");
}

async function main() {
  const started = Date.now();
  if (!values["no-build"]) build();
  const machine = await machineFacts();
  const cpu = machineCpu();
  const report: BenchReport = {
    mode: quick ? "quick" : "full",
    startedAt: new Date(started).toISOString(),
    machine,
    failures: [],
  };
  const step = (name: string) =>
    console.log(`[bench] ${name} (${Math.round((Date.now() - started) / 1000)} s)`);

  // `--cpu-prof`: a V8 profile of every service process, to read with `pnpm --filter @switchboard/bench profile`.
  const profileDir = join(root, "bench/results/tmp/profiles");
  if (values["cpu-prof"]) mkdirSync(profileDir, { recursive: true });
  const nodeFlags = values["cpu-prof"] ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : [];

  if (parts.has("ingress")) {
    step("ingress vs bare Express");
    report.ingress = await benchIngress({
      seconds: quick ? 2 : 15,
      warmupSeconds: quick ? 1 : 3,
      connections: 32,
      poolSize: quick ? 20_000 : 80_000,
      nodeFlags,
    });
  }
  if (parts.has("broker")) {
    step("raw JetStream publish-with-ack");
    report.broker = await benchBroker(quick ? 1 : 6);
  }

  if (parts.has("e2e") || parts.has("contention") || parts.has("fairness") || parts.has("metrics")) {
    step("starting fake Meta, ingress, page-router, message-service");
    const system = await startBenchSystem(nodeFlags);
    try {
      const pageCounts = quick ? [1, 20] : [1, 100, 1000, 10_000];
      // The pages of the e2e runs, then: hot and spread (contention), flood and quiet (fairness), solo.
      const pages = Array.from(
        { length: (parts.has("e2e") ? Math.max(...pageCounts) : 0) + 5 },
        (_, i) => `${510_000_000_000_000 + i}`,
      );
      const [hot, spread, flood, quiet, solo] = pages.slice(-5) as [string, string, string, string, string];
      step(`connecting ${pages.length} pages`);
      await system.connectPages(pages);
      if (parts.has("e2e")) {
        const e2e = await benchEndToEnd(
          system,
          pages,
          {
            pageCounts,
            conversations: quick ? 40 : 1000,
            // Every page of a run gets conversations: 10,000 pages are 10,000 conversations at least.
            // 6,000 webhooks (18,000 messages, ~10 s): a 2,000-webhook run lasted 2 s, and filling and
            // draining the pipeline moved its figure by ±15 % from one run to the next.
            webhooks: quick ? 60 : 6000,
            fixedRateSeconds: quick ? 2 : 10,
            connections: 32,
          },
          step,
        );
        report.endToEnd = { runs: e2e.runs, warmupMessages: e2e.warmupMessages, resources: e2e.resources };
        report.failures.push(...e2e.failures);
      }
      if (parts.has("contention")) {
        step("contention: one hot conversation vs spread");
        const sampler = sampleResources(pipelinePids(system));
        const runs = await benchContention(
          system,
          { hot, spread },
          { messages: quick ? 60 : 600, spreadConversations: quick ? 20 : 100, connections: 32 },
          report.failures,
        );
        report.contention = { runs, resources: sampler.stop() };
      }
      if (parts.has("fairness")) {
        step("one page alone, then a flood beside a quiet page");
        const sampler = sampleResources(pipelinePids(system));
        const soloRun = await benchSoloPage(
          system,
          solo,
          { messagesPerSecond: quick ? 100 : 500, seconds: quick ? 2 : 10 },
          report.failures,
        );
        const fairness = await benchFairness(
          system,
          { flood, quiet },
          {
            floodEntries: quick ? 2000 : 30_000,
            quietMessagesPerSecond: quick ? 20 : 50,
            quietSeconds: quick ? 3 : 20,
          },
          report.failures,
        );
        report.fairness = { solo: soloRun, fairness, resources: sampler.stop() };
      }
      if (parts.has("metrics")) {
        step(`/metrics after entries for ${quick ? "2,000" : "100,000"} pages`);
        report.metrics = await benchMetricsAtScale(system, quick ? 2000 : 100_000);
      }
    } finally {
      await system.stop();
    }
  }

  report.machineCpuBusyPercent = cpu.busyPercent();
  report.durationSeconds = Math.round((Date.now() - started) / 1000);
  const files = writeReport(report);
  step(`done: ${files.json}, ${files.markdown}`);
  if (report.failures.length > 0) {
    console.error(`[bench] FAILED:\n${report.failures.map((f) => `  - ${f}`).join("\n")}`);
    process.exitCode = 1;
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
