export { type Dashboard, dashboardExpressions, queriedMetricNames, readDashboard } from "./dashboard";
export { paths } from "./files";
export { metricNamesIn } from "./promql";
export {
  type AlertingRule,
  alertingRules,
  prometheusRuleYaml,
  type RuleGroup,
  readRuleGroups,
} from "./rules";
