import type { Logger } from "pino";

/**
 * Runs `sweep` every `intervalMs`, never two at once in this process (a slow sweep skips its next turn);
 * a failed sweep is logged and tried again next time. `stop` waits for the one running.
 */
export function runPeriodically(
  sweep: () => Promise<number>,
  intervalMs: number,
  log: Logger,
  what: string,
): { sweep: () => Promise<number>; stop: () => Promise<void> } {
  let running: Promise<number> | undefined;
  const timer = setInterval(() => {
    if (running) return;
    running = sweep()
      .catch((error: unknown) => {
        log.warn({ err: error }, `${what} failed`);
        return 0;
      })
      .finally(() => {
        running = undefined;
      });
  }, intervalMs);
  return {
    sweep,
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
