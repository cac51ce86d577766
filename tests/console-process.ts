import { freePort, type ServiceProcess, startServiceProcess } from "@switchboard/local-system";
import type { System } from "./harness";

export const OPERATOR_TOKEN = "e2e-operator-token-0123456789";

export type RunningConsole = ServiceProcess;

/** The operator console (`apps/console`, built) as a process on a running system's environment. */
export async function startConsole(
  system: System,
  extraEnv: Record<string, string> = {},
): Promise<RunningConsole> {
  return startServiceProcess("console", {
    env: { ...system.env, OPERATOR_TOKEN, ...extraEnv },
    port: await freePort(),
  });
}
