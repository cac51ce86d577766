import { z } from "zod";

/**
 * One page's reconcile job for one interval slot, on the `reconcile` work queue. Every replica schedules
 * the same slot; its `Nats-Msg-Id` (`reconcileJobId`) lets the stream keep one job per page per slot.
 */
export const ReconcileJob = z.object({
  pageId: z.string(),
  /** `floor(scheduledAt / interval)`: the interval this check belongs to. */
  slot: z.number().int().nonnegative(),
  intervalMs: z.number().int().positive(),
  scheduledAt: z.number().int(),
});
export type ReconcileJob = z.infer<typeof ReconcileJob>;

export function reconcileJobId(pageId: string, slot: number): string {
  return `reconcile:${pageId}:${slot}`;
}
