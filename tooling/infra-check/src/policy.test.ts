// biome-ignore-all lint/suspicious/noExplicitAny: tests read and mutate rendered manifests as plain JSON
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { checkObjects } from "./check";
import { type K8sObject, renderKustomization } from "./manifests";
import { checkPolicy, imageTag } from "./policy";

const k8s = fileURLToPath(new URL("../../../infra/k8s/", import.meta.url));
const rendered = renderKustomization(join(k8s, "overlays/production"));
const byName = (kind: string, name: string) =>
  rendered.find((o) => o.kind === kind && o.metadata.name === name) as K8sObject;

/** A copy of the production ingress Deployment with `change` applied to its container (or pod). */
function ingressWith(change: (container: any, pod: any) => void): K8sObject {
  const deployment = structuredClone(byName("Deployment", "ingress")) as any;
  change(deployment.spec.template.spec.containers[0], deployment.spec.template.spec);
  return deployment;
}

const rules = (object: K8sObject) => checkPolicy(object).map((f) => f.rule);

describe("policy checks", () => {
  it("pass every workload of the real overlay", () => {
    expect(rendered.flatMap(checkPolicy)).toEqual([]);
  });

  it.each([
    ["liveness-probe", (c: any) => delete c.livenessProbe],
    ["readiness-probe", (c: any) => delete c.readinessProbe],
    ["resources", (c: any) => delete c.resources.limits],
    ["resources", (c: any) => delete c.resources.requests.memory],
    ["resources", (c: any) => delete c.resources],
    [
      "run-as-non-root",
      (c: any, pod: any) => {
        delete c.securityContext.runAsNonRoot;
        delete pod.securityContext.runAsNonRoot;
      },
    ],
    ["run-as-non-root", (c: any) => (c.securityContext.runAsNonRoot = false)],
    ["run-as-non-root", (c: any) => (c.securityContext.runAsUser = 0)],
    ["privilege-escalation", (c: any) => delete c.securityContext.allowPrivilegeEscalation],
    ["privilege-escalation", (c: any) => (c.securityContext.allowPrivilegeEscalation = true)],
    ["read-only-root", (c: any) => delete c.securityContext.readOnlyRootFilesystem],
    ["read-only-root", (c: any) => (c.securityContext.readOnlyRootFilesystem = false)],
    ["capabilities", (c: any) => (c.securityContext.capabilities = { drop: ["NET_RAW"] })],
    ["privileged", (c: any) => (c.securityContext.privileged = true)],
    ["image-tag", (c: any) => (c.image = "registry.example.com/switchboard/ingress:latest")],
    ["image-tag", (c: any) => (c.image = "registry.example.com/switchboard/ingress")],
    ["image-tag", (c: any) => (c.image = "localhost:5000/switchboard/ingress")],
  ])("fail with %s on a crafted bad container", (rule, change) => {
    expect(rules(ingressWith(change))).toContain(rule);
  });

  it("hold an init container to the same rules (except probes)", () => {
    const bad = ingressWith((_c, pod) => {
      pod.initContainers = [{ name: "setup", image: "busybox:1.37" }];
    });
    const findings = checkPolicy(bad).filter((f) => f.object.endsWith("container setup"));
    expect(findings.map((f) => f.rule)).toEqual(
      expect.arrayContaining(["resources", "privilege-escalation", "read-only-root", "capabilities"]),
    );
    expect(findings.map((f) => f.rule)).not.toContain("liveness-probe");
  });

  it("accept an image pinned by digest, and a Job without probes", () => {
    const digest = ingressWith(
      (c) => (c.image = `registry.example.com/switchboard/ingress@sha256:${"a".repeat(64)}`),
    );
    expect(checkPolicy(digest)).toEqual([]);
    expect(checkPolicy(byName("Job", "db-migrate"))).toEqual([]);
  });

  it("read the tag after a registry port", () => {
    expect(imageTag("localhost:5000/a/b")).toEqual({ tag: undefined, digest: undefined });
    expect(imageTag("localhost:5000/a/b:1.2")).toEqual({ tag: "1.2", digest: undefined });
  });

  it("fail an overlay whose patch removes a probe and un-pins an image, through kustomize", async () => {
    const dir = mkdtempSync(join(tmpdir(), "infra-check-"));
    try {
      writeFileSync(
        join(dir, "kustomization.yaml"),
        [
          "apiVersion: kustomize.config.k8s.io/v1beta1",
          "kind: Kustomization",
          "resources:",
          `  - ${relative(dir, join(k8s, "base"))}`,
          "images:",
          "  - name: switchboard/page-router",
          "    newTag: latest",
          "patches:",
          "  - target: { kind: Deployment, name: page-router }",
          "    patch: |-",
          "      - op: remove",
          "        path: /spec/template/spec/containers/0/readinessProbe",
        ].join("\n"),
      );
      const findings = await checkObjects(renderKustomization(dir));
      const pageRouter = findings.filter((f) => f.object === "Deployment/page-router container page-router");
      expect(pageRouter.map((f) => f.rule).sort()).toEqual(["image-tag", "readiness-probe"]);
      // the base alone names images without a tag: only overlays are deployable
      expect(findings.filter((f) => f.rule === "image-tag").length).toBeGreaterThan(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
