import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  bakeApps,
  bakeGroupTargets,
  checkApps,
  checkDockerfile,
  checkReleaseImageSet,
  TEST_DOUBLES,
} from "./dockerfile";
import { type Finding, type K8sObject, objectName, renderKustomization } from "./manifests";
import { checkPolicy } from "./policy";
import { validateSchema } from "./schema";

export interface Report {
  /** What was checked: each overlay with its object count, and the image recipe. */
  checked: string[];
  findings: Finding[];
}

/** Schema, unknown-field and policy checks of every object of one rendered kustomization. */
export async function checkObjects(objects: K8sObject[], { policy = true } = {}): Promise<Finding[]> {
  const findings: Finding[] = [];
  for (const object of objects) {
    findings.push(...(await validateSchema(object)));
    if (policy) findings.push(...checkPolicy(object));
  }
  return findings;
}

/** Each workload image is one the Dockerfile builds (`…/<app>:<tag>` with <app> in the bake file). */
export function checkImagesAreBuilt(objects: K8sObject[], apps: string[]): Finding[] {
  const findings: Finding[] = [];
  for (const object of objects) {
    const text = JSON.stringify(object.spec ?? {});
    for (const match of text.matchAll(/"image":"([^"]+)"/g)) {
      const image = match[1]!;
      const app = image.split("@")[0]!.split(":")[0]!.split("/").at(-1)!;
      if (!apps.includes(app)) {
        findings.push({ rule: "image-built", object: objectName(object), message: `no app builds ${image}` });
      }
    }
  }
  return findings;
}

/** The only overlay that may run a test double: a laptop cluster. */
export const LOCAL_OVERLAY = "local";

/** No object of a non-local overlay names a test double: not as a workload, image, label or URL. */
export function checkNoTestDoubles(objects: K8sObject[]): Finding[] {
  const findings: Finding[] = [];
  for (const object of objects) {
    const text = JSON.stringify(object);
    for (const double of TEST_DOUBLES.filter((d) => text.includes(d))) {
      findings.push({
        rule: "test-double",
        object: objectName(object),
        message: `mentions ${double}, a test double: only overlays/${LOCAL_OVERLAY} may run it`,
      });
    }
  }
  return findings;
}

/** Lets the webhook-dispatcher (and the message-service's registration check) accept http and private targets. */
export const PRIVATE_TARGETS_SETTING = "WEBHOOK_ALLOW_PRIVATE_TARGETS";

/**
 * No object of a non-local overlay turns on WEBHOOK_ALLOW_PRIVATE_TARGETS: in a ConfigMap or a container's
 * env, any value but "false"/"0" (a value from a Secret included) would let a tenant's webhook reach
 * the cluster's own network.
 */
export function checkNoPrivateTargets(objects: K8sObject[]): Finding[] {
  const findings: Finding[] = [];
  const off = (value: unknown) => value === "false" || value === "0";
  const fail = (object: K8sObject, where: string) =>
    findings.push({
      rule: "private-targets",
      object: objectName(object),
      message: `${where} sets ${PRIVATE_TARGETS_SETTING}: only overlays/${LOCAL_OVERLAY} may allow private webhook targets`,
    });
  for (const object of objects) {
    const data = (object as { data?: Record<string, unknown> }).data;
    if (object.kind === "ConfigMap" && data && PRIVATE_TARGETS_SETTING in data) {
      if (!off(data[PRIVATE_TARGETS_SETTING])) fail(object, "its data");
    }
    JSON.stringify(object.spec ?? {}, (key, value) => {
      if (key === "env" && Array.isArray(value)) {
        for (const entry of value as Array<{ name?: string; value?: unknown }>) {
          if (entry?.name === PRIVATE_TARGETS_SETTING && !off(entry.value)) fail(object, "a container env");
        }
      }
      return value;
    });
  }
  return findings;
}

/** Everything `pnpm infra:check` checks, for the repository at `root`. */
export async function checkRepository(root: string): Promise<Report> {
  const report: Report = { checked: [], findings: [] };
  const bake = readFileSync(join(root, "infra/docker/docker-bake.hcl"), "utf8");
  const apps = bakeApps(bake);
  const localImages = bakeGroupTargets(bake, "local");
  report.findings.push(...checkDockerfile(readFileSync(join(root, "infra/docker/Dockerfile"), "utf8")));
  report.findings.push(...checkApps(apps, root));
  report.findings.push(...checkApps(localImages, root, "packages"));
  report.findings.push(...checkReleaseImageSet(apps));
  report.checked.push(
    `infra/docker/Dockerfile (apps: ${apps.join(", ")}; laptop only: ${localImages.join(", ") || "none"})`,
  );

  const overlays = join(root, "infra/k8s/overlays");
  for (const overlay of readdirSync(overlays, { withFileTypes: true }).filter((d) => d.isDirectory())) {
    const objects = renderKustomization(join(overlays, overlay.name));
    const local = overlay.name === LOCAL_OVERLAY;
    report.findings.push(...(await checkObjects(objects)));
    report.findings.push(...checkImagesAreBuilt(objects, local ? [...apps, ...localImages] : apps));
    if (!local) report.findings.push(...checkNoTestDoubles(objects), ...checkNoPrivateTargets(objects));
    report.checked.push(`infra/k8s/overlays/${overlay.name} (${objects.length} objects)`);
  }
  // Third-party images for laptops only: valid objects, but not held to Switchboard's own policies.
  const deps = renderKustomization(join(root, "infra/k8s/local-deps"));
  report.findings.push(...(await checkObjects(deps, { policy: false })));
  report.checked.push(`infra/k8s/local-deps (${deps.length} objects, schema only)`);
  return report;
}
