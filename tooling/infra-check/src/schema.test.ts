// biome-ignore-all lint/suspicious/noExplicitAny: tests read and mutate rendered manifests as plain JSON
import { describe, expect, it } from "vitest";
import { parseManifests } from "./manifests";
import { validateSchema } from "./schema";

const [deployment] = parseManifests(`
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: { any-label: "x", another.example.com/label: "y" }
  annotations: { note: "free-form keys are fine" }
spec:
  replicas: 2
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
        - name: web
          image: web:1.0
          ports: [{ containerPort: 8080 }]
          env: [{ name: A, value: "1" }]
          resources: { limits: { cpu: "1", memory: 128Mi } }
`);

function variant(change: (d: any) => void) {
  const copy = structuredClone(deployment) as any;
  change(copy);
  return copy;
}

describe("schema check", () => {
  it("accepts a valid object, with free-form maps such as labels", async () => {
    expect(await validateSchema(deployment!)).toEqual([]);
  });

  it("fails a field of the wrong type", async () => {
    const findings = await validateSchema(variant((d) => (d.spec.replicas = "two")));
    expect(findings).toEqual([
      expect.objectContaining({ rule: "schema", message: "/spec/replicas: must be integer" }),
    ]);
  });

  it("fails a missing required field", async () => {
    const findings = await validateSchema(variant((d) => delete d.spec.selector));
    expect(findings.map((f) => f.message)).toEqual(["/spec: missing required field selector"]);
  });

  it("fails a misspelt field at any depth", async () => {
    const findings = await validateSchema(
      variant((d) => {
        d.spec.template.spec.containers[0].livenesProbe = { httpGet: { path: "/", port: 8080 } };
        d.metadata.lables = {};
        d.spec.strategyy = {};
      }),
    );
    expect(
      findings
        .filter((f) => f.rule === "unknown-field")
        .map((f) => f.message)
        .sort(),
    ).toEqual([
      "/metadata/lables is not a field of Deployment",
      "/spec/strategyy is not a field of Deployment",
      "/spec/template/spec/containers/0/livenesProbe is not a field of Deployment",
    ]);
  });

  it("validates a PrometheusRule (a custom resource with a model package)", async () => {
    const [rule] = parseManifests(`
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: { name: switchboard }
spec:
  groups:
    - name: switchboard
      rules:
        - alert: DeadLetters
          expr: switchboard_dead_lettered_total > 0
          labels: { severity: warning }
`);
    expect(await validateSchema(rule!)).toEqual([]);
    const bad = structuredClone(rule) as any;
    bad.spec.groups[0].rules[0].expresion = bad.spec.groups[0].rules[0].expr;
    delete bad.spec.groups[0].rules[0].expr;
    expect((await validateSchema(bad)).map((f) => f.rule).sort()).toEqual(["schema", "unknown-field"]);
  });

  it("fails a kind it has no schema for, and a wrong apiVersion", async () => {
    const [custom] = parseManifests("apiVersion: example.com/v1\nkind: Widget\nmetadata: { name: w }\n");
    expect((await validateSchema(custom!)).map((f) => f.rule)).toEqual(["schema"]);
    const wrongVersion = variant((d) => (d.apiVersion = "apps/v1beta9"));
    expect((await validateSchema(wrongVersion)).map((f) => f.rule)).toEqual(["schema"]);
  });
});
