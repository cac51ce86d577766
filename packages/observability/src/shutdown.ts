import { describeStartupFailure } from "@switchboard/config";
import type { Logger } from "pino";

export interface ShutdownStep {
  name: string;
  run: () => Promise<unknown> | unknown;
}

/**
 * Graceful shutdown as named steps run in order (stop accepting → stop consuming → finish in-flight
 * work → drain the bus → close stores), under one deadline. Exit code 128+signal, or 1 on a timeout.
 */
export function onShutdown(
  log: Logger,
  steps: ShutdownStep[],
  { timeoutMs = 25_000 } = {},
): () => Promise<void> {
  let running: Promise<void> | undefined;
  const run = (): Promise<void> => {
    running ??= (async () => {
      for (const step of steps) {
        const started = Date.now();
        try {
          await step.run();
          log.info({ step: step.name, ms: Date.now() - started }, "shutdown step done");
        } catch (error) {
          log.error({ step: step.name, err: error }, "shutdown step failed");
        }
      }
    })();
    return running;
  };
  const signals = { SIGTERM: 15, SIGINT: 2 } as const;
  for (const [signal, number] of Object.entries(signals)) {
    process.once(signal, () => {
      log.info({ signal }, "shutting down");
      const timer = setTimeout(() => {
        log.error({ timeoutMs }, "shutdown deadline passed, exiting");
        process.exit(1);
      }, timeoutMs);
      timer.unref();
      void run().then(() => {
        log.flush?.();
        process.exit(128 + number);
      });
    });
  }
  return run;
}

/**
 * Runs `main`, printing a start-up failure plainly and exiting 1: a bad variable as the config says it,
 * an unreachable NATS, Redis or PostgreSQL by name and URL with how to start it (no stack trace).
 */
export function runMain(main: () => Promise<unknown>): void {
  main().catch((error: unknown) => {
    console.error(describeStartupFailure(error));
    process.exit(1);
  });
}
