import { z } from "zod";

/**
 * One person sent a page more messages within a window than `PSID_FLOOD_THRESHOLD` allows: flagged for
 * abuse review (a bot, a script, a stuck client). Published once per window on the domain stream
 * (`domainEvent(PSID_FLOOD_FLAGGED, pageId)`); the messages themselves are stored as usual.
 */
export const PSID_FLOOD_FLAGGED = "psid.flood_flagged";

export const PsidFloodFlaggedEvent = z.object({
  type: z.literal(PSID_FLOOD_FLAGGED),
  pageId: z.string(),
  psid: z.string(),
  threshold: z.number().int(),
  windowMs: z.number().int(),
  occurredAt: z.number().int(),
});
export type PsidFloodFlaggedEvent = z.infer<typeof PsidFloodFlaggedEvent>;
