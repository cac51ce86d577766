import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { paths } from "./files";
import { promtool } from "./promtool";
import { alertingRules, prometheusRuleYaml, readRuleGroups } from "./rules";

const groups = readRuleGroups();
const alerts = alertingRules(groups);

describe("alert rules", () => {
  it("pass promtool check rules", () => {
    const { code, output } = promtool(["check", "rules", "alerts.yaml"], paths.directory);
    expect(output).toContain("SUCCESS");
    expect(code).toBe(0);
  });

  it("pass their unit tests (promtool test rules): each alert fires on a crafted series, quiet on a healthy one", () => {
    const { code, output } = promtool(["test", "rules", "alerts.test.yaml"], paths.directory);
    expect(output).not.toContain("FAILED");
    expect(code).toBe(0);
  });

  it("are each tested firing and quiet", () => {
    const tests = readFileSync(paths.alertTests, "utf8");
    for (const { alert } of alerts) {
      expect(tests, alert).toMatch(new RegExp(`alertname: ${alert}\\n\\s+exp_alerts:\\n\\s+- exp_labels`));
      expect(tests, alert).toMatch(new RegExp(`alertname: ${alert}\\n\\s+exp_alerts: \\[\\]`));
    }
  });

  it("name the page in the summary when the alert is per page, and link to an existing runbook section", () => {
    const runbook = readFileSync(paths.runbook, "utf8");
    const anchors = new Set(
      [...runbook.matchAll(/^#{2,3} (.+)$/gm)].map((m) =>
        m[1]!
          .trim()
          .toLowerCase()
          .replace(/[^a-z0-9 -]/g, "")
          .replace(/ /g, "-"),
      ),
    );
    for (const rule of alerts) {
      const summary = rule.annotations?.summary ?? "";
      if (/by \(page_id\)|page_id:/.test(rule.expr))
        expect(summary, rule.alert).toContain("{{ $labels.page_id }}");
      expect(rule.labels?.severity, rule.alert).toMatch(/^(critical|warning)$/);
      const url = rule.annotations?.runbook_url ?? "";
      expect(url, rule.alert).toMatch(/^docs\/runbook\.md#/);
      expect(anchors, `${rule.alert}: ${url}`).toContain(url.split("#")[1]);
    }
  });

  it("agree with the PrometheusRule for the production overlay", () => {
    expect(readFileSync(paths.prometheusRule, "utf8")).toBe(prometheusRuleYaml(groups));
  });
});
