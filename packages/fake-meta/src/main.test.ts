import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { freePort } from "@switchboard/testing";
import { describe, expect, it } from "vitest";
import { fakeMetaControl } from "./control-client";

const packageDir = fileURLToPath(new URL("..", import.meta.url));
const baseEnv = { FB_APP_SECRET: "fake-meta-main-secret", FB_APP_ID: "100000000000001", LOG_LEVEL: "info" };

/** `src/main.ts` as a process (through tsx), as `pnpm dev` runs it. */
function startMain(env: Record<string, string>) {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "--conditions=@switchboard/source", "src/main.ts"],
    {
      cwd: packageDir,
      env: { PATH: process.env.PATH ?? "", ...baseEnv, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let output = "";
  child.stdout.on("data", (c: Buffer) => {
    output += c.toString();
  });
  child.stderr.on("data", (c: Buffer) => {
    output += c.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, exited, output: () => output };
}

describe("the fake Meta process", () => {
  it("refuses to start under NODE_ENV=production, saying why, with exit code 1", async () => {
    const run = startMain({ NODE_ENV: "production", PORT: String(await freePort()) });
    expect(await run.exited).toBe(1);
    expect(run.output()).toContain("refuses to run with NODE_ENV=production");
    expect(run.output()).not.toContain("fake meta listening");
  });

  it("prints the control token it generates when FAKE_META_CONTROL_TOKEN is unset", async () => {
    const port = await freePort();
    const run = startMain({ NODE_ENV: "development", PORT: String(port) });
    try {
      for (let i = 0; i < 200 && !run.output().includes("fake meta listening"); i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      const token = /"controlToken":"([^"]+)"/.exec(run.output())?.[1];
      expect(token).toBeDefined();
      const url = `http://127.0.0.1:${port}`;
      expect((await fetch(`${url}/_fake/pages`)).status).toBe(401);
      expect((await fakeMetaControl(url, token!)("/pages")).status).toBe(200);
    } finally {
      run.child.kill("SIGTERM");
      await run.exited;
    }
  });
});
