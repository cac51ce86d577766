import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { bakeApps, bakeGroupTargets, checkApps, checkDockerfile, checkReleaseImageSet } from "./dockerfile";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const dockerfile = readFileSync(join(root, "infra/docker/Dockerfile"), "utf8");
const bake = readFileSync(join(root, "infra/docker/docker-bake.hcl"), "utf8");
const apps = bakeApps(bake);
const rules = (text: string) => checkDockerfile(text).map((f) => f.rule);

describe("the image recipe", () => {
  it("follows the pattern", () => {
    expect(checkDockerfile(dockerfile)).toEqual([]);
  });

  it("builds the four services, the webhook-dispatcher and the console for a release, each an app with a build script", () => {
    expect(apps).toEqual([
      "ingress",
      "page-router",
      "message-service",
      "subscription-service",
      "webhook-dispatcher",
      "console",
    ]);
    expect(checkApps(apps, root)).toEqual([]);
    expect(checkReleaseImageSet(apps)).toEqual([]);
  });

  it("builds the fake Meta only in the laptop group, from its package", () => {
    expect(bakeGroupTargets(bake, "local")).toEqual(["fake-meta"]);
    expect(bakeGroupTargets(bake, "default")).toEqual(["app"]);
    expect(checkApps(["fake-meta"], root, "packages")).toEqual([]);
  });

  it("fails a release image set that builds the fake Meta", () => {
    const bad = bake.replace('"console"]', '"console", "fake-meta"]');
    expect(bad).not.toEqual(bake);
    expect(checkReleaseImageSet(bakeApps(bad))).toEqual([
      expect.objectContaining({ rule: "test-double", message: expect.stringContaining("fake-meta") }),
    ]);
  });

  it.each([
    ["non-root", (d: string) => d.replace("USER 10001:10001", "USER root")],
    ["non-root", (d: string) => d.replace("USER 10001:10001", "")],
    ["init", (d: string) => d.replace('ENTRYPOINT ["/usr/bin/tini", "--"]', "")],
    ["node-env", (d: string) => d.replace("ENV NODE_ENV=production", "")],
    [
      "base-image",
      (d: string) => d.replace("ARG NODE_IMAGE=node:24-bookworm-slim", "ARG NODE_IMAGE=node:latest"),
    ],
    ["base-image", (d: string) => d.replace("ARG NODE_IMAGE=node:24-bookworm-slim", "ARG NODE_IMAGE=node")],
    [
      "node-lts",
      (d: string) => d.replace("ARG NODE_IMAGE=node:24-bookworm-slim", "ARG NODE_IMAGE=node:20-slim"),
    ],
    ["lockfile", (d: string) => d.replace("--frozen-lockfile", "")],
    ["prod-deps", (d: string) => d.replace(/ --prod /, " ")],
    ["prune", (d: string) => d.replace("--docker", "")],
    ["cmd", (d: string) => d.replace('"dist/main.js"', '"src/main.ts"')],
    [
      "multi-stage",
      () => 'FROM node:24-slim\nARG APP\nUSER 10001\nENTRYPOINT ["tini"]\nENV NODE_ENV=production\n',
    ],
  ])("fails with %s on a crafted bad Dockerfile", (rule, change) => {
    const bad = change(dockerfile);
    expect(bad).not.toEqual(dockerfile);
    expect(rules(bad)).toContain(rule);
  });

  it("fails an APP that is not an app with a build script", () => {
    const dir = mkdtempSync(join(tmpdir(), "infra-check-apps-"));
    try {
      mkdirSync(join(dir, "apps/no-build"), { recursive: true });
      writeFileSync(
        join(dir, "apps/no-build/package.json"),
        JSON.stringify({ name: "@switchboard/no-build" }),
      );
      const findings = checkApps(["no-build", "missing"], dir);
      expect(findings.map((f) => `${f.object}: ${f.message}`)).toEqual([
        "apps/no-build: has no build script",
        expect.stringMatching(/^apps\/missing: has no package.json/),
      ]);
      expect(checkApps([], dir).map((f) => f.message)).toEqual(["names no app"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
