/**
 * Whether an echo's (or a thread message's) text is the text we sent. Instagram echoes carry no metadata,
 * so a send in flight is recognised by what it says; Meta may trim or collapse the whitespace of what it
 * delivers, which must not turn our own send into a stranger's message (and a second send).
 */
export function sameSentText(sent: string | null, delivered: string | null | undefined): boolean {
  if (sent === null) return delivered === null || delivered === undefined || delivered === "";
  return delivered !== null && delivered !== undefined && comparable(sent) === comparable(delivered);
}

const comparable = (text: string) => text.replace(/\s+/g, " ").trim();
