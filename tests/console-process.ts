import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { eventually } from "@switchboard/testing";
import { freePort, type System } from "./harness";

const root = fileURLToPath(new URL("..", import.meta.url));

export const OPERATOR_TOKEN = "e2e-operator-token-0123456789";

export interface RunningConsole {
  url: string;
  process: ChildProcess;
  output: string[];
  stop(): Promise<void>;
}

/** The operator console (`apps/console`, built) as a process on a running system's environment. */
export async function startConsole(
  system: System,
  extraEnv: Record<string, string> = {},
): Promise<RunningConsole> {
  const port = await freePort();
  const child = spawn(process.execPath, ["--enable-source-maps", "apps/console/dist/main.js"], {
    cwd: root,
    env: { ...process.env, ...system.env, OPERATOR_TOKEN, PORT: String(port), ...extraEnv },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output: string[] = [];
  child.stdout?.on("data", (chunk: Buffer) => output.push(chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => output.push(chunk.toString()));
  const url = `http://127.0.0.1:${port}`;
  await eventually(
    async () => {
      if (child.exitCode !== null) throw new Error(`console exited: ${output.join("").slice(-2000)}`);
      return (await fetch(`${url}/readyz`).catch(() => undefined))?.status === 200;
    },
    { timeoutMs: 30_000, intervalMs: 100, message: "console to be ready" },
  );
  return {
    url,
    process: child,
    output,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}
