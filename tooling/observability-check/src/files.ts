import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../../", import.meta.url));

/** Paths of the observability files this package checks, from the repository root. */
export const paths = {
  root,
  directory: `${root}infra/observability`,
  alerts: `${root}infra/observability/alerts.yaml`,
  alertTests: `${root}infra/observability/alerts.test.yaml`,
  prometheusRule: `${root}infra/observability/prometheus-rule.yaml`,
  dashboard: `${root}infra/observability/dashboard.json`,
  runbook: `${root}docs/runbook.md`,
};
