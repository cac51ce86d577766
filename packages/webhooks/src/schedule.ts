import { parseDuration } from "@switchboard/config";

/** "5s,5m,30m,2h,5h,10h,10h" → delays in ms after each failed attempt (the `WEBHOOK_RETRY_SCHEDULE` form). */
export function parseRetrySchedule(spec: string): number[] {
  const delays = spec
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part !== "")
    .map((part) => {
      const ms = parseDuration(part);
      if (ms === undefined || ms <= 0) throw new Error(`not a delay: "${part}" (use e.g. 5s, 5m, 2h)`);
      return ms;
    });
  if (delays.length === 0) throw new Error("the retry schedule needs at least one delay");
  return delays;
}

/**
 * When to try again after `attempts` failed attempts, or undefined once the schedule is used up
 * (the delivery has failed for good; an operator can still retry it).
 */
export function nextAttemptDelay(schedule: number[], attempts: number): number | undefined {
  return attempts >= 1 && attempts <= schedule.length ? schedule[attempts - 1] : undefined;
}
