import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository's root (this file is `packages/local-system/{src,dist}/…`): apps are started from there. */
export const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));

export interface ServiceProcess {
  name: string;
  url: string;
  process: ChildProcess;
  pid: number;
  /** Where its stdout and stderr go, when they go to a file rather than to memory. */
  logFile?: string;
  /** Everything it printed so far (stdout and stderr interleaved). */
  output(): string;
  /** SIGTERM, then SIGKILL if it has not exited after 10 s. */
  stop(): Promise<void>;
}

export interface ServiceProcessOptions {
  env: Record<string, string>;
  port: number;
  /** Node flags before the script (e.g. `--cpu-prof`). */
  nodeFlags?: string[];
  /** What node runs after its flags; by default the app as built for production, `apps/<app>/dist/main.js`. */
  script?: string[];
  /** Write stdout and stderr to this file (costs the parent nothing) instead of keeping them in memory. */
  logFile?: string;
  /** The path that answers 200 once the process is ready. */
  readyPath?: string;
  readyTimeoutMs?: number;
}

const KILL_AFTER_MS = 10_000;

function outputOf(child: ChildProcess, logFile: string | undefined): () => string {
  if (logFile) return () => readFileSync(logFile, "utf8");
  const chunks: string[] = [];
  child.stdout?.on("data", (chunk: Buffer) => chunks.push(chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => chunks.push(chunk.toString()));
  return () => chunks.join("");
}

/** Fails as soon as the process exits (not after the timeout), with the end of what it printed. */
async function waitReady(service: ServiceProcess, readyPath: string, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  const tail = () => service.output().slice(-2000);
  for (;;) {
    const { exitCode, signalCode } = service.process;
    if (exitCode !== null || signalCode !== null) {
      throw new Error(`${service.name} exited (${exitCode ?? signalCode}) before it was ready: ${tail()}`);
    }
    const res = await fetch(`${service.url}${readyPath}`).catch(() => undefined);
    if (res?.status === 200) return;
    if (Date.now() > deadline) {
      throw new Error(`${service.name} not ready on ${readyPath} after ${timeoutMs} ms: ${tail()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Starts `node <app>` as production does (from the repository root, `PORT` set) and waits until
 * `readyPath` answers 200. If it exits first, or is not ready in time, it is stopped and the error
 * carries the end of its output.
 */
export async function startServiceProcess(
  app: string,
  {
    env,
    port,
    nodeFlags = [],
    script = ["--enable-source-maps", `apps/${app}/dist/main.js`],
    logFile,
    readyPath = "/readyz",
    readyTimeoutMs = 30_000,
  }: ServiceProcessOptions,
): Promise<ServiceProcess> {
  let out: number | undefined;
  if (logFile) {
    mkdirSync(dirname(logFile), { recursive: true });
    out = openSync(logFile, "w");
  }
  const child = spawn(process.execPath, [...nodeFlags, ...script], {
    cwd: repoRoot,
    env: { ...process.env, ...env, PORT: String(port) },
    stdio: ["ignore", out ?? "pipe", out ?? "pipe"],
  });
  if (out !== undefined) closeSync(out);
  const service: ServiceProcess = {
    name: app,
    url: `http://127.0.0.1:${port}`,
    process: child,
    pid: child.pid ?? 0,
    logFile,
    output: outputOf(child, logFile),
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const killer = setTimeout(() => child.kill("SIGKILL"), KILL_AFTER_MS);
        child.once("exit", () => {
          clearTimeout(killer);
          resolve();
        });
        child.kill("SIGTERM");
      }),
  };
  try {
    await waitReady(service, readyPath, readyTimeoutMs);
  } catch (error) {
    await service.stop();
    throw error;
  }
  return service;
}
