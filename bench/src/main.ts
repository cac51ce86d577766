import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { benchBroker } from "./broker-bench";
import { benchIngress } from "./ingress-bench";
import { machineFacts } from "./machine";
import { type BenchReport, writeReport } from "./report";
import { machineCpu } from "./resources";
import { root } from "./system";

const PARTS = ["ingress", "broker"] as const;
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

  if (parts.has("ingress")) {
    step("ingress vs bare Express");
    const profileDir = join(root, "bench/results/tmp/profiles");
    if (values["cpu-prof"]) mkdirSync(profileDir, { recursive: true });
    report.ingress = await benchIngress({
      seconds: quick ? 4 : 15,
      warmupSeconds: quick ? 1 : 3,
      connections: 32,
      poolSize: quick ? 20_000 : 80_000,
      ...(values["cpu-prof"] ? { nodeFlags: ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] } : {}),
    });
  }
  if (parts.has("broker")) {
    step("raw JetStream publish-with-ack");
    report.broker = await benchBroker(quick ? 2 : 6);
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
