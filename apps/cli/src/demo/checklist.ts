import { eventually } from "@switchboard/local-system";
import type { DemoSystem } from "./system";

/** A step failed: what was expected, and what was found instead. */
export class CheckFailed extends Error {
  constructor(
    message: string,
    readonly evidence: string[] = [],
  ) {
    super(message);
    this.name = "CheckFailed";
  }
}

export function check(condition: unknown, message: string, evidence: string[] = []): asserts condition {
  if (!condition) throw new CheckFailed(message, evidence);
}

export async function waitFor<T>(
  probe: () => Promise<T | false | undefined>,
  what: string,
  timeoutMs = 30_000,
): Promise<T> {
  try {
    return await eventually(probe, { timeoutMs, intervalMs: 200, message: what });
  } catch (error) {
    throw new CheckFailed(`after ${timeoutMs / 1000} s: ${(error as Error).message}`);
  }
}

export interface DemoPage {
  pageId: string;
  name: string;
  company: string;
  token: string;
  people: Array<{ psid: string; firstName: string; lastName: string }>;
}

export const PAGES: DemoPage[] = [
  {
    pageId: "610000000000001",
    name: "Acme Shoes",
    company: "acme",
    token: "EAAB-shoes-demo-page-token-0001",
    people: [
      { psid: "7100000000000001", firstName: "Ada", lastName: "Lovelace" },
      { psid: "7100000000000002", firstName: "Alan", lastName: "Turing" },
    ],
  },
  {
    pageId: "610000000000002",
    name: "Bolt Bikes",
    company: "bolt",
    token: "EAAB-bikes-demo-page-token-0002",
    people: [
      { psid: "7200000000000001", firstName: "Grace", lastName: "Hopper" },
      { psid: "7200000000000002", firstName: "Edsger", lastName: "Dijkstra" },
    ],
  },
];

/** Enough of a token to tell two apart in a transcript, never the whole secret. */
export const masked = (token: string | undefined) =>
  token ? `${token.slice(0, 10)}…(${token.length} chars)` : "none";

export async function fake<T = unknown>(system: DemoSystem, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${system.urls["fake-meta"]}/_fake${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${system.fakeMetaControlToken}` },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (!res.ok) throw new CheckFailed(`fake Meta ${path} answered ${res.status}: ${await res.text()}`);
  return (await res.json()) as T;
}

/** Sum of a counter's samples on a /metrics page. */
export function metricSum(exposition: string, name: string): number {
  return exposition
    .split("\n")
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(" ") + 1)), 0);
}

/** The Instagram account the demo connects beside the two pages (the same company as the first). */
export const INSTAGRAM = {
  pageId: "17841461000000001",
  name: "Acme Shoes on Instagram",
  company: "acme",
  token: "IGAA-shoes-demo-instagram-token-0001",
  person: { psid: "6100000000000001", name: "Ada Lovelace", username: "ada.codes" },
};
