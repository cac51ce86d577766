import { readFileSync } from "node:fs";
import { paths } from "./files";
import { metricNamesIn } from "./promql";
import { alertingRules, readRuleGroups } from "./rules";

export interface DashboardPanel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: Array<{ refId: string; expr: string }>;
}
export interface Dashboard {
  uid: string;
  title: string;
  panels: DashboardPanel[];
  templating: { list: Array<{ name: string; query?: unknown; definition?: string }> };
}

export function readDashboard(path = paths.dashboard): Dashboard {
  return JSON.parse(readFileSync(path, "utf8")) as Dashboard;
}

/** Every PromQL expression the dashboard runs: panel targets and template variable queries. */
export function dashboardExpressions(dashboard: Dashboard): string[] {
  return [
    ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)),
    ...dashboard.templating.list.flatMap((v) => (v.definition ? [v.definition] : [])),
  ];
}

/** The exported metric names the alert rules and the dashboard query: each must be on some /metrics. */
export function queriedMetricNames(): string[] {
  const groups = readRuleGroups();
  const rules = groups.flatMap((g) => g.rules.map((r) => r.expr));
  const annotations = alertingRules(groups).flatMap((r) => Object.values(r.annotations ?? {}));
  const dashboard = dashboardExpressions(readDashboard());
  return [...new Set([...rules, ...annotations, ...dashboard].flatMap(metricNamesIn))].sort();
}
