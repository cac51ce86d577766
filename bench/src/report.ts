import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { BrokerBenchResult } from "./broker-bench";
import type { ContentionRun } from "./contention-bench";
import type { E2eRun } from "./e2e-bench";
import type { FairnessRun, MetricsRun, SoloRun } from "./fairness-bench";
import type { IngressBenchResult } from "./ingress-bench";
import type { LoadResult } from "./load";
import type { MachineFacts } from "./machine";
import type { ProcessUsage } from "./resources";
import { root } from "./system";

export interface BenchReport {
  mode: "quick" | "full";
  startedAt: string;
  durationSeconds?: number;
  machine: MachineFacts;
  /** Whole-machine CPU busy over the run (100 % = every core): anything beyond the bench's own processes is noise. */
  machineCpuBusyPercent?: number;
  ingress?: IngressBenchResult;
  broker?: BrokerBenchResult;
  endToEnd?: { runs: E2eRun[]; warmupMessages?: number; resources: Record<string, ProcessUsage> };
  contention?: { runs: ContentionRun[]; resources: Record<string, ProcessUsage> };
  fairness?: { solo: SoloRun; fairness: FairnessRun; resources: Record<string, ProcessUsage> };
  metrics?: MetricsRun;
  /** Why the run failed (lost or duplicated messages…); a non-empty list means exit code 1. */
  failures: string[];
}

const TARGETS = {
  ingressRatio: 0.6,
  ingressP99AtHalfPeakMs: 50,
  endToEndVsBroker: 0.5,
  flatness: 0.15,
  endToEndP99AtHalfPeakMs: 250,
  soloP99Ms: 250,
  quietP99Ms: 2000,
  metricsBytes: 1_000_000,
  metricsMs: 50,
  cpuMsPerMessage: 1,
};

const mark = (ok: boolean) => (ok ? "✅" : "❌");

function loadRow(name: string, r: LoadResult) {
  return `| ${name} | ${r.requestsPerSecond} | ${r.p50Ms} | ${r.p99Ms} | ${r.maxMs} | ${r.requests} | ${r.non2xx + r.errors + r.timeouts} |`;
}

function usageTable(title: string, usage: Record<string, ProcessUsage>) {
  return [
    `| ${title} | mean CPU % of a core | peak CPU % | peak RSS MiB |`,
    "|---|---|---|---|",
    ...Object.entries(usage).map(
      ([name, u]) => `| ${name} | ${u.cpuPercent} | ${u.peakCpuPercent} | ${u.peakRssMiB} |`,
    ),
  ].join("\n");
}

export function renderMarkdown(report: BenchReport, jsonName: string): string {
  const m = report.machine;
  const lines: string[] = [
    `# Switchboard benchmark (${report.mode})`,
    "",
    `Run ${report.startedAt}, ${report.durationSeconds ?? "?"} s; raw figures in [${jsonName}](./${jsonName}). Produced by \`pnpm bench${report.mode === "quick" ? " --quick" : ""}\`.`,
    "",
    `Machine: ${m.cpuModel}, ${m.cores} cores, ${m.ramGiB} GiB RAM, ${m.os}; Node ${m.node}; PostgreSQL ${m.postgres}, Redis ${m.redis}, NATS ${m.nats}.`,
    `Load average at start ${m.loadAverageAtStart}; whole-machine CPU busy during the run ${report.machineCpuBusyPercent ?? "?"} %.`,
    "Load generator (autocannon), services, NATS, Redis and Postgres all share these cores: every figure is beside a baseline from the same run.",
    "",
    "## Targets",
    "",
    "| target | measured | |",
    "|---|---|---|",
  ];
  if (report.ingress) {
    const i = report.ingress;
    lines.push(
      `| ingress ≥ ${TARGETS.ingressRatio * 100} % of bare Express req/s | ${Math.round(i.ratio * 100)} % (${i.ingress.requestsPerSecond} vs ${i.bareExpress.requestsPerSecond}) | ${mark(i.ratio >= TARGETS.ingressRatio)} |`,
      `| ingress p99 < ${TARGETS.ingressP99AtHalfPeakMs} ms at half its peak | ${i.ingressAtHalfPeak.p99Ms} ms at ${i.ingressAtHalfPeak.offeredRate} req/s | ${mark(i.ingressAtHalfPeak.p99Ms < TARGETS.ingressP99AtHalfPeakMs)} |`,
    );
  }
  const full = report.endToEnd?.runs.filter((r) => r.mode === "full speed") ?? [];
  const steady = report.endToEnd?.runs.filter((r) => r.mode === "fixed rate") ?? [];
  if (full.length > 0) {
    // The issue's baseline: sequential publish-with-ack (one in flight), from the same run.
    const broker = report.broker?.runs.find((r) => r.inFlight === 1)?.perSecond;
    const worst = Math.min(...full.map((r) => r.storedPerSecond));
    if (broker) {
      lines.push(
        `| end to end ≥ ${TARGETS.endToEndVsBroker * 100} % of sequential raw JetStream publish-with-ack/s | ${full.map((r) => `${r.pages} p: ${Math.round((r.storedPerSecond / broker) * 100)} %`).join(", ")} (${broker}/s raw, one in flight) | ${mark(worst / broker >= TARGETS.endToEndVsBroker)} |`,
      );
    }
    const base = full[0]!.storedPerSecond;
    const spread = full.map((r) => (r.storedPerSecond - base) / base);
    lines.push(
      `| stored/s flat (±${TARGETS.flatness * 100} %) from ${full[0]!.pages} to ${full.at(-1)!.pages} pages | ${full.map((r, i) => `${r.pages} p: ${r.storedPerSecond}/s (${spread[i]! >= 0 ? "+" : ""}${Math.round(spread[i]! * 100)} %)`).join(", ")} | ${mark(spread.every((d) => Math.abs(d) <= TARGETS.flatness))} |`,
      `| end-to-end p99 < ${TARGETS.endToEndP99AtHalfPeakMs} ms at half the peak | ${steady.map((r) => `${r.pages} p: ${r.p99Ms} ms`).join(", ")} | ${mark(steady.every((r) => r.p99Ms < TARGETS.endToEndP99AtHalfPeakMs))} |`,
    );
  }
  if (full.length > 0 && report.endToEnd) {
    // CPU of every process of the pipeline (services, NATS, Redis, Postgres; not the load generator) over
    // the e2e runs, per message stored in them.
    const usage = Object.entries(report.endToEnd.resources).filter(([name]) => !name.startsWith("bench"));
    const cpuMs = usage.reduce((sum, [, u]) => sum + (u.cpuSeconds ?? 0) * 1000, 0);
    const stored =
      report.endToEnd.runs.reduce((sum, r) => sum + r.stored, 0) + (report.endToEnd.warmupMessages ?? 0);
    if (cpuMs > 0 && stored > 0) {
      const perMessage = Math.round((cpuMs / stored) * 100) / 100;
      lines.push(
        `| CPU per stored message ≤ ${TARGETS.cpuMsPerMessage} ms (every process of the pipeline, the fake Meta included) | ${perMessage} ms (${Math.round(cpuMs / 1000)} CPU-s for ${stored} messages, warm-ups included; paced runs idle part of the time) | ${mark(perMessage <= TARGETS.cpuMsPerMessage)} |`,
      );
    }
  }
  if (report.fairness) {
    const { solo, fairness } = report.fairness;
    lines.push(
      `| one page alone at ${solo.messagesPerSecond} msg/s: p99 < ${TARGETS.soloP99Ms} ms | ${solo.p99Ms} ms | ${mark(solo.p99Ms < TARGETS.soloP99Ms)} |`,
      `| flood of ${fairness.floodEntries} entries beside a page at ${fairness.quietMessagesPerSecond}/s: quiet p99 < ${TARGETS.quietP99Ms} ms, flood stored whole, nothing dead-lettered | quiet p99 ${fairness.quiet.p99Ms} ms; flood ${fairness.flood.stored}/${fairness.flood.expected} (drained ${fairness.flood.drainSeconds} s after its last answer); ${fairness.deadLettered} dead letters | ${mark(fairness.quiet.p99Ms < TARGETS.quietP99Ms && fairness.flood.stored === fairness.flood.expected && fairness.deadLettered === 0)} |`,
    );
  }
  if (report.metrics) {
    const worst = report.metrics.services.reduce((a, b) => (b.bytes > a.bytes ? b : a));
    const slowest = report.metrics.services.reduce((a, b) => (b.medianMs > a.medianMs ? b : a));
    lines.push(
      `| /metrics at ${report.metrics.pages} pages < 1 MB and < ${TARGETS.metricsMs} ms | largest ${worst.service} ${Math.round(worst.bytes / 1024)} KiB; slowest ${slowest.service} ${slowest.medianMs} ms (median of 5) | ${mark(worst.bytes < TARGETS.metricsBytes && slowest.medianMs < TARGETS.metricsMs)} |`,
    );
  }
  lines.push(
    `| no message lost or duplicated | ${report.failures.length === 0 ? "every run: rows = messages sent" : `${report.failures.length} failure(s)`} | ${mark(report.failures.length === 0)} |`,
  );
  if (report.failures.length > 0) {
    lines.push("", "## FAILED", "", ...report.failures.map((f) => `- ${f}`));
  }
  if (report.ingress) {
    const i = report.ingress;
    lines.push(
      "",
      "## 1. Ingress vs bare Express 5",
      "",
      `Signed POSTs, ${i.payload.bodies} distinct bodies of 1–5 entries (mean ${i.payload.meanEntries} entries, ${i.payload.meanBytes} bytes; half escaped as Meta does, half UTF-8; non-ASCII texts; a quarter with an unquoted long \`app_id\`), 32 connections.`,
      "",
      "| server | req/s | p50 ms | p99 ms | max ms | requests | failed |",
      "|---|---|---|---|---|---|---|",
      loadRow("bare Express 5 (reads body, 200)", i.bareExpress),
      loadRow("ingress (verify, parse, publish every entry, wait for acks)", i.ingress),
      loadRow(`ingress at half peak (${i.ingressAtHalfPeak.offeredRate} req/s offered)`, i.ingressAtHalfPeak),
      "",
      `CPU per request (ms): bare Express ${i.cpuMsPerRequest.bareExpress["bare-express"]}, ingress ${i.cpuMsPerRequest.ingress.ingress} + nats-server ${i.cpuMsPerRequest.ingress["nats-server"]}; load generator ${i.cpuMsPerRequest.bareExpress["bench (load generator)"]} / ${i.cpuMsPerRequest.ingress["bench (load generator)"]}.`,
      "",
      usageTable("bare Express run", i.resources.bareExpress),
      "",
      usageTable("ingress run", i.resources.ingress),
    );
  }
  if (report.broker) {
    const b = report.broker;
    lines.push(
      "",
      "## 2. Raw JetStream publish-with-ack (one Node process)",
      "",
      `Entries of ${b.entryBytes} bytes to the webhooks stream (file storage, 1 replica, 10 min duplicate window), content-hash \`Nats-Msg-Id\` and trace headers, as the ingress publishes.`,
      "",
      "| in flight | published/s | p50 ms | p99 ms |",
      "|---|---|---|---|",
      ...b.runs.map((r) => `| ${r.inFlight} | ${r.perSecond} | ${r.p50Ms} | ${r.p99Ms} |`),
    );
  }
  if (report.endToEnd) {
    lines.push(
      "",
      "## 3. End to end: signed POST → ingress → JetStream → page-router → message-service → Postgres row",
      "",
      "Latency is Meta's timestamp (set as the webhook leaves) → the row's `created_at`. Full speed: autocannon, 32 connections, a fixed number of webhooks; fixed rate: evenly paced at half the stored rate full speed reached. Every user wrote once before (warm-up), so contacts and profiles exist.",
      "",
      "| pages | mode | webhooks | messages | rows | stored msg/s | e2e p50 ms | e2e p99 ms | e2e max ms | HTTP p99 ms | resent | drain s |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|",
      ...report.endToEnd.runs.map(
        (r) =>
          `| ${r.pages} | ${r.mode}${r.offeredWebhooksPerSecond ? ` (${r.offeredWebhooksPerSecond} webhooks/s)` : ""} | ${r.webhooks} | ${r.expected} | ${r.stored} | ${r.storedPerSecond} | ${r.p50Ms} | ${r.p99Ms} | ${r.maxMs} | ${r.http.p99Ms} | ${r.resent} | ${r.drainSeconds} |`,
      ),
      "",
      usageTable("end-to-end runs", report.endToEnd.resources),
    );
  }
  if (report.contention) {
    lines.push(
      "",
      "## 4. Contention: one hot conversation vs the same burst spread",
      "",
      "A burst of single-message webhooks to one page (32 connections), all for one user, then spread over many users. Lock figures are this run's delta of the message-service's `switchboard_lock_*` metrics; wait percentiles are histogram bucket bounds.",
      "",
      "| shape | conversations | messages | rows | stored msg/s | e2e p50 ms | e2e p99 ms | lock waits p50 / p99 (s ≤) | acquired after waiting | contended in Redis | failed | mean hold ms |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|",
      ...report.contention.runs.map(
        (r) =>
          `| ${r.shape} | ${r.conversations} | ${r.expected} | ${r.stored} | ${r.storedPerSecond} | ${r.p50Ms} | ${r.p99Ms} | ${r.locks.p50Seconds} / ${r.locks.p99Seconds} | ${r.locks.acquiredAfterWaiting} of ${r.locks.acquired} | ${r.locks.contended} | ${r.locks.failed} | ${r.locks.meanHoldMs} |`,
      ),
      "",
      "Lock wait distribution (share of acquisitions waiting at most):",
      "",
      `| shape | ${report.contention.runs[0]?.locks.waitDistribution.map((b) => `≤ ${b.le} s`).join(" | ") ?? ""} |`,
      `|---|${report.contention.runs[0]?.locks.waitDistribution.map(() => "---").join("|") ?? ""}|`,
      ...report.contention.runs.map(
        (r) =>
          `| ${r.shape} | ${r.locks.waitDistribution.map((b) => `${Math.round(b.share * 100)} %`).join(" | ")} |`,
      ),
      "",
      usageTable("contention runs", report.contention.resources),
    );
  }
  if (report.fairness) {
    const { solo, fairness } = report.fairness;
    lines.push(
      "",
      "## 5. Fair share: one page alone, then a flood beside a quiet page",
      "",
      `One page alone, ${solo.messagesPerSecond} messages/s evenly paced (5-entry webhooks) for ${solo.seconds} s: no other page waits, so the fair share (PAGE_MESSAGE_RATE 50/s) must not shape it. Then page A flooded with ${fairness.floodEntries} entries${fairness.floodEntries > 20_000 ? " (more than ROUTER_MAX_ACK_PENDING, 20,000)" : ""} at full speed while page B sends ${fairness.quietMessagesPerSecond} messages/s.`,
      "",
      "| run | messages | rows | stored msg/s | e2e p50 ms | e2e p99 ms | e2e max ms | HTTP p99 ms | drain s |",
      "|---|---|---|---|---|---|---|---|---|",
      `| one page alone | ${solo.expected} | ${solo.stored} | ${solo.storedPerSecond} | ${solo.p50Ms} | ${solo.p99Ms} | ${solo.maxMs} | ${solo.http.p99Ms} | ${solo.drainSeconds} |`,
      `| flooded page A | ${fairness.flood.expected} | ${fairness.flood.stored} | ${fairness.flood.storedPerSecond} | ${fairness.flood.p50Ms} | ${fairness.flood.p99Ms} | ${fairness.flood.maxMs} | ${fairness.floodHttp.p99Ms} | ${fairness.flood.drainSeconds} |`,
      `| quiet page B | ${fairness.quiet.expected} | ${fairness.quiet.stored} | ${fairness.quiet.storedPerSecond} | ${fairness.quiet.p50Ms} | ${fairness.quiet.p99Ms} | ${fairness.quiet.maxMs} | ${fairness.quietHttp.p99Ms} | ${fairness.quiet.drainSeconds} |`,
      "",
      `Dead letters during the flood: ${fairness.deadLettered}.`,
      "",
      usageTable("fair-share runs", report.fairness.resources),
    );
  }
  if (report.metrics) {
    lines.push(
      "",
      `## 6. /metrics after entries for ${report.metrics.pages} pages`,
      "",
      "Signed entries for that many distinct pages (not connected: the ingress counts them, the router keeps them unrouted), then each service's /metrics read five times.",
      "",
      "| service | bytes | series | median ms | max ms |",
      "|---|---|---|---|---|",
      ...report.metrics.services.map(
        (s) => `| ${s.service} | ${s.bytes} | ${s.series} | ${s.medianMs} | ${s.maxMs} |`,
      ),
    );
  }
  return `${lines.join("\n")}\n`;
}

export function writeReport(report: BenchReport): { json: string; markdown: string } {
  const stamp = report.startedAt.replace(/[:.]/g, "-");
  const jsonName = `${stamp}.json`;
  const dir = join(root, "bench/results");
  const json = join(dir, jsonName);
  const markdown = join(dir, "latest.md");
  writeFileSync(json, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(markdown, renderMarkdown(report, jsonName));
  return { json, markdown };
}
