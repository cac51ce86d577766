import { readFileSync } from "node:fs";
import { parse, stringify } from "yaml";
import { paths } from "./files";

export interface RecordingRule {
  record: string;
  expr: string;
}
export interface AlertingRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
export type Rule = RecordingRule | AlertingRule;
export interface RuleGroup {
  name: string;
  interval?: string;
  rules: Rule[];
}

export function readRuleGroups(path = paths.alerts): RuleGroup[] {
  return (parse(readFileSync(path, "utf8")) as { groups: RuleGroup[] }).groups;
}

export function alertingRules(groups: RuleGroup[]): AlertingRule[] {
  return groups.flatMap((g) => g.rules.filter((r): r is AlertingRule => "alert" in r));
}

/**
 * The same rule groups as a prometheus-operator `PrometheusRule`, for the production overlay. Generated
 * (`pnpm --filter @switchboard/observability-check prometheus-rule`) so the two never drift; a test compares them.
 */
export function prometheusRuleYaml(groups: RuleGroup[]): string {
  const resource = {
    apiVersion: "monitoring.coreos.com/v1",
    kind: "PrometheusRule",
    metadata: {
      name: "switchboard",
      labels: { "app.kubernetes.io/part-of": "switchboard", role: "alert-rules" },
    },
    spec: { groups },
  };
  return `# Generated from alerts.yaml by tooling/observability-check (pnpm --filter @switchboard/observability-check prometheus-rule). Do not edit.\n${stringify(resource, { lineWidth: 0 })}`;
}
