import { execFileSync } from "node:child_process";
import { parseAllDocuments } from "yaml";

/** One Kubernetes object as rendered by kustomize. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [key: string]: unknown };
  [key: string]: unknown;
}

/** What a check found wrong, named so a reader finds the object (and container) at once. */
export interface Finding {
  rule: string;
  object: string;
  message: string;
}

export function objectName(object: K8sObject): string {
  return `${object.kind}/${object.metadata?.name ?? "<unnamed>"}`;
}

/** Renders a kustomization directory with `kubectl kustomize` (offline: no cluster is contacted). */
export function renderKustomization(dir: string): K8sObject[] {
  const text = execFileSync("kubectl", ["kustomize", dir], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
  return parseManifests(text);
}

export function parseManifests(text: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((doc) => {
      if (doc.errors.length > 0) throw new Error(`invalid YAML: ${doc.errors[0]?.message}`);
      return doc.toJS() as K8sObject | null;
    })
    .filter((object): object is K8sObject => object !== null);
}
