import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Finding } from "./manifests";
import { imageTag } from "./policy";

interface Instruction {
  keyword: string;
  args: string;
}

/** Dockerfile instructions with line continuations joined and comments dropped. */
export function parseDockerfile(text: string): Instruction[] {
  return text
    .replace(/\\\r?\n/g, " ")
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith("#"))
    .map((line) => {
      const [keyword = "", ...rest] = line.split(/\s+/);
      return { keyword: keyword.toUpperCase(), args: rest.join(" ") };
    });
}

/** The app names the bake file builds for a release (its `matrix = { app = [...] }`). */
export function bakeApps(bakeText: string): string[] {
  const list = /app\s*=\s*\[([^\]]*)\]/.exec(bakeText)?.[1];
  if (!list) return [];
  return [...list.matchAll(/"([^"]+)"/g)].map((m) => m[1]!);
}

/** The targets of one bake group, e.g. `group "local" { targets = ["fake-meta"] }`. */
export function bakeGroupTargets(bakeText: string, group: string): string[] {
  const list = new RegExp(`group\\s+"${group}"\\s*\\{[^}]*targets\\s*=\\s*\\[([^\\]]*)\\]`).exec(
    bakeText,
  )?.[1];
  if (!list) return [];
  return [...list.matchAll(/"([^"]+)"/g)].map((m) => m[1]!);
}

/** Test doubles: built for laptops and tests, never part of a release or a non-local overlay. */
export const TEST_DOUBLES = ["fake-meta"];

/** The release's image set holds no test double (the fake Meta signs any payload with the app secret). */
export function checkReleaseImageSet(apps: string[]): Finding[] {
  return apps
    .filter((app) => TEST_DOUBLES.includes(app))
    .map((app) => ({
      rule: "test-double",
      object: "infra/docker/docker-bake.hcl",
      message: `the release image set builds ${app}, a test double (build it in the "local" group only)`,
    }));
}

const FILE = "infra/docker/Dockerfile";

/**
 * The image recipe every app shares: turbo prune → install from the lockfile → build → `pnpm deploy
 * --prod` into a slim runtime stage on Node ≥ 24 that runs as a non-root user under an init process
 * (tini or dumb-init, so SIGTERM reaches Node) with NODE_ENV=production; no base image is `latest`.
 */
export function checkDockerfile(text: string): Finding[] {
  const findings: Finding[] = [];
  const fail = (rule: string, message: string) => findings.push({ rule, object: FILE, message });
  const instructions = parseDockerfile(text);

  const argDefaults = new Map<string, string>();
  for (const { keyword, args } of instructions) {
    if (keyword !== "ARG") continue;
    const [name, value] = args.split("=");
    if (name && value !== undefined) argDefaults.set(name, value);
  }
  const expand = (value: string) =>
    value.replace(/\$\{?(\w+)\}?/g, (whole, name: string) => argDefaults.get(name) ?? whole);

  const stages: Instruction[][] = [];
  const stageNames = new Set<string>();
  for (const instruction of instructions) {
    if (instruction.keyword === "FROM") {
      stages.push([]);
      const [image = "", as, name] = instruction.args.split(/\s+/);
      if (as?.toUpperCase() === "AS" && name) stageNames.add(name);
      if (!stageNames.has(image)) {
        const resolved = expand(image);
        const { tag, digest } = imageTag(resolved);
        if (resolved.includes("$")) fail("base-image", `FROM ${image} has no default value`);
        else if (!digest && (!tag || tag === "latest")) fail("base-image", `FROM ${resolved} is not pinned`);
      }
    }
    stages.at(-1)?.push(instruction);
  }
  if (stages.length < 2) fail("multi-stage", "is not a multi-stage build");

  const all = instructions.map((i) => `${i.keyword} ${i.args}`).join("\n");
  if (!/^ARG APP\b/m.test(all)) fail("app-arg", "has no ARG APP");
  if (!/turbo prune "?@switchboard\/\$\{APP\}"? --docker/.test(all))
    fail("prune", "does not turbo prune the app");
  if (!/pnpm install --frozen-lockfile/.test(all))
    fail("lockfile", "does not install with --frozen-lockfile");
  if (!/pnpm deploy\b.*--prod\b/.test(all)) fail("prod-deps", "does not pnpm deploy --prod");

  const runtime = stages.at(-1) ?? [];
  const from = runtime[0]?.args.split(/\s+/)[0] ?? "";
  const major = Number(/node:(\d+)/.exec(expand(from))?.[1]);
  if (!(major >= 24)) fail("node-lts", `runtime stage ${expand(from)} is not Node 24 or later`);
  const users = runtime.filter((i) => i.keyword === "USER").map((i) => i.args.split(":")[0]);
  const user = users.at(-1);
  if (!user) fail("non-root", "runtime stage sets no USER");
  else if (user === "root" || user === "0") fail("non-root", `runtime stage runs as ${user}`);
  const entrypoint = runtime.filter((i) => i.keyword === "ENTRYPOINT").at(-1)?.args ?? "";
  if (!/tini|dumb-init/.test(entrypoint)) fail("init", "runtime ENTRYPOINT is not tini or dumb-init");
  if (!runtime.some((i) => i.keyword === "ENV" && /\bNODE_ENV=production\b/.test(i.args))) {
    fail("node-env", "runtime stage does not set NODE_ENV=production");
  }
  const cmd = runtime.filter((i) => i.keyword === "CMD").at(-1)?.args ?? "";
  if (!/"node".*"dist\/main\.js"/.test(cmd)) fail("cmd", 'runtime CMD does not run "node" … "dist/main.js"');
  return findings;
}

/**
 * Every app the bake file builds exists under `apps/` (or, for the local-only targets, `packages/`) with a
 * build script producing dist/main.js.
 */
export function checkApps(apps: string[], repoRoot: string, dir: "apps" | "packages" = "apps"): Finding[] {
  const findings: Finding[] = [];
  if (apps.length === 0 && dir === "apps") {
    findings.push({ rule: "apps", object: "infra/docker/docker-bake.hcl", message: "names no app" });
  }
  for (const app of apps) {
    const manifest = join(repoRoot, dir, app, "package.json");
    const fail = (message: string) => findings.push({ rule: "apps", object: `${dir}/${app}`, message });
    if (!existsSync(manifest)) {
      fail(`has no package.json (the image's APP must be a directory under ${dir}/)`);
      continue;
    }
    const pkg = JSON.parse(readFileSync(manifest, "utf8")) as {
      name?: string;
      scripts?: Record<string, string>;
    };
    if (pkg.name !== `@switchboard/${app}`) fail(`package name is ${pkg.name}, not @switchboard/${app}`);
    if (!pkg.scripts?.build) fail("has no build script");
  }
  return findings;
}
