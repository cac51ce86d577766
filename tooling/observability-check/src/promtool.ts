import { spawnSync } from "node:child_process";

export class PromtoolMissingError extends Error {
  constructor() {
    super(
      "promtool not found: install Debian's `prometheus` package (apt-get install -y prometheus); .ci/run does",
    );
    this.name = "PromtoolMissingError";
  }
}

export function promtool(args: string[], cwd: string): { code: number; output: string } {
  const result = spawnSync("promtool", args, { cwd, encoding: "utf8" });
  if (result.error && (result.error as NodeJS.ErrnoException).code === "ENOENT")
    throw new PromtoolMissingError();
  if (result.error) throw result.error;
  return { code: result.status ?? 1, output: `${result.stdout}${result.stderr}` };
}
