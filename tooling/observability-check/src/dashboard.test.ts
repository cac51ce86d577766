import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { dashboardExpressions, readDashboard } from "./dashboard";
import { promtool } from "./promtool";
import { readRuleGroups } from "./rules";

const dashboard = readDashboard();
const expressions = dashboardExpressions(dashboard);

describe("Grafana dashboard", () => {
  it("has unique panel ids and a query in every panel", () => {
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const panel of dashboard.panels.filter((p) => p.type !== "row")) {
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      for (const target of panel.targets ?? []) expect(target.expr.trim(), panel.title).not.toBe("");
    }
  });

  it("lays panels out on Grafana's 24-column grid without overlaps", () => {
    const taken = new Map<string, string>();
    for (const panel of dashboard.panels) {
      const { x, y, w, h } = panel.gridPos;
      expect(x + w, panel.title).toBeLessThanOrEqual(24);
      for (let col = x; col < x + w; col++) {
        for (let row = y; row < y + h; row++) {
          expect(taken.get(`${col},${row}`), `${panel.title} overlaps`).toBeUndefined();
          taken.set(`${col},${row}`, panel.title);
        }
      }
    }
  });

  it("runs only valid PromQL (each expression checked by promtool as a recording rule)", () => {
    const dir = mkdtempSync(join(tmpdir(), "dashboard-promql-"));
    // Grafana's `label_values(metric, label)` is not PromQL: check its metric selector instead.
    const promql = expressions.map((e) =>
      e.replace(/^label_values\((.+), *\w+\)$/, "$1").replace(/\$page_id/g, ".*"),
    );
    const rules = {
      groups: [
        { name: "dashboard", rules: promql.map((expr, i) => ({ record: `dashboard:expr_${i}`, expr })) },
      ],
    };
    writeFileSync(join(dir, "dashboard-rules.yaml"), stringify(rules));
    const { code, output } = promtool(["check", "rules", "dashboard-rules.yaml"], dir);
    expect(output).toContain(`SUCCESS: ${promql.length} rules found`);
    expect(code).toBe(0);
  });

  it("reads only recording rules that alerts.yaml defines", () => {
    const recorded = new Set(
      readRuleGroups().flatMap((g) => g.rules.flatMap((r) => ("record" in r ? [r.record] : []))),
    );
    const used = expressions.flatMap((e) => e.match(/[a-z_]+:[a-z0-9_]+(?::[a-z0-9_]+)?/g) ?? []);
    expect(used.length).toBeGreaterThan(0);
    for (const name of used) expect(recorded, name).toContain(name);
  });

  it("covers reception per page, latency, locks, subscription health, the DLQ and outbound webhooks", () => {
    const all = expressions.join("\n");
    for (const metric of [
      "switchboard_webhook_entries_received_total",
      "switchboard_message_processing_latency_seconds_bucket",
      "switchboard_lock_wait_seconds_bucket",
      "switchboard_page_subscription_status",
      "switchboard_jetstream_dead_letters_waiting",
      "switchboard_webhook_oldest_pending_seconds",
      "switchboard_webhook_pending_deliveries",
      "switchboard_webhook_attempts_total",
      "switchboard_webhook_endpoints",
    ]) {
      expect(all).toContain(metric);
    }
  });
});
