import type { Finding, K8sObject } from "./manifests";
import { objectName } from "./manifests";

/* Minimal shapes of the fields the policies read (the schema check has already validated types). */
interface SecurityContext {
  runAsNonRoot?: boolean;
  runAsUser?: number;
  allowPrivilegeEscalation?: boolean;
  readOnlyRootFilesystem?: boolean;
  privileged?: boolean;
  capabilities?: { drop?: string[]; add?: string[] };
}
interface Container {
  name: string;
  image?: string;
  livenessProbe?: unknown;
  readinessProbe?: unknown;
  resources?: { requests?: Record<string, unknown>; limits?: Record<string, unknown> };
  securityContext?: SecurityContext;
}
interface PodSpec {
  securityContext?: SecurityContext;
  containers?: Container[];
  initContainers?: Container[];
}

interface WorkloadSpec {
  template?: { spec?: PodSpec };
  jobTemplate?: { spec?: { template?: { spec?: PodSpec } } };
}

/** The pod template of a workload, and whether it runs to completion (a Job has no probes). */
function podOf(object: K8sObject): { spec: PodSpec; runsToCompletion: boolean } | undefined {
  const spec = object.spec as (PodSpec & WorkloadSpec) | undefined;
  switch (object.kind) {
    case "Pod":
      return { spec: spec ?? {}, runsToCompletion: false };
    case "Deployment":
    case "StatefulSet":
    case "DaemonSet":
    case "ReplicaSet":
      return { spec: spec?.template?.spec ?? {}, runsToCompletion: false };
    case "Job":
      return { spec: spec?.template?.spec ?? {}, runsToCompletion: true };
    case "CronJob":
      return { spec: spec?.jobTemplate?.spec?.template?.spec ?? {}, runsToCompletion: true };
    default:
      return undefined;
  }
}

/** `name:tag` or `name@sha256:…`; the tag is after the last colon that follows the last slash. */
export function imageTag(image: string): { tag?: string; digest?: string } {
  const [reference, digest] = image.split("@");
  const lastSlash = reference!.lastIndexOf("/");
  const colon = reference!.lastIndexOf(":");
  return { tag: colon > lastSlash ? reference!.slice(colon + 1) : undefined, digest };
}

/**
 * Security and operability rules every workload container must meet: liveness and readiness probes
 * (not for Jobs), CPU and memory requests and limits, non-root, no privilege escalation, a read-only
 * root filesystem, all capabilities dropped, and an image pinned by tag or digest (never `latest`).
 */
export function checkPolicy(object: K8sObject): Finding[] {
  const pod = podOf(object);
  if (!pod) return [];
  const findings: Finding[] = [];
  const podSecurity = pod.spec.securityContext ?? {};
  const containers = [...(pod.spec.initContainers ?? []), ...(pod.spec.containers ?? [])];
  if (containers.length === 0) {
    findings.push({ rule: "containers", object: objectName(object), message: "no containers" });
  }
  for (const container of containers) {
    const fail = (rule: string, message: string) =>
      findings.push({ rule, object: `${objectName(object)} container ${container.name}`, message });
    const isInit = pod.spec.initContainers?.includes(container) ?? false;

    if (!pod.runsToCompletion && !isInit) {
      if (!container.livenessProbe) fail("liveness-probe", "has no livenessProbe");
      if (!container.readinessProbe) fail("readiness-probe", "has no readinessProbe");
    }

    for (const kind of ["requests", "limits"] as const) {
      for (const resource of ["cpu", "memory"]) {
        if (container.resources?.[kind]?.[resource] === undefined) {
          fail("resources", `has no resources.${kind}.${resource}`);
        }
      }
    }

    const security = { ...podSecurity, ...(container.securityContext ?? {}) };
    if (security.runAsNonRoot !== true) fail("run-as-non-root", "runAsNonRoot is not true");
    if (security.runAsUser === 0) fail("run-as-non-root", "runAsUser is 0 (root)");
    if (security.privileged === true) fail("privileged", "runs privileged");
    const own = container.securityContext ?? {};
    if (own.allowPrivilegeEscalation !== false) {
      fail("privilege-escalation", "allowPrivilegeEscalation is not false");
    }
    if (own.readOnlyRootFilesystem !== true) fail("read-only-root", "readOnlyRootFilesystem is not true");
    if (!own.capabilities?.drop?.includes("ALL")) fail("capabilities", "does not drop ALL capabilities");

    const image = container.image ?? "";
    const { tag, digest } = imageTag(image);
    if (!image) fail("image-tag", "has no image");
    else if (!digest && !tag) fail("image-tag", `image ${image} has no tag`);
    else if (!digest && tag === "latest") fail("image-tag", `image ${image} uses the latest tag`);
  }
  return findings;
}
