import { type Bus, listStored, replayStored } from "@switchboard/bus";
import {
  type ReconcileResult,
  reconcileSubscription,
  type SubscriptionContext,
} from "@switchboard/subscriptions";

/** The operator's repair, as `pnpm sb subscriptions resubscribe-all --page-id`: subscribe again and verify. */
export function resubscribePage(
  subscriptions: SubscriptionContext,
  pageId: string,
): Promise<ReconcileResult> {
  return reconcileSubscription(subscriptions, pageId, "resubscribe");
}

/**
 * As `pnpm sb unrouted replay --page-id`: the page's parked entries go back to the webhooks stream, and
 * the page-router parks them again if the page still cannot take them.
 */
export async function replayUnrouted(
  bus: Bus,
  pageId: string,
): Promise<{ replayed: number; failed: number }> {
  const { streams, subjects } = bus.topology;
  const stored = await listStored(bus.js, bus.jsm, streams.unrouted.name, subjects.unrouted(pageId));
  return replayStored(bus.js, bus.jsm, streams.unrouted.name, stored);
}
