import { listPages, type PageOverview } from "@switchboard/pages";
import {
  inspectSubscription,
  type ReconcileResult,
  reconcileSubscription,
  type SubscriptionContext,
} from "@switchboard/subscriptions";
import type { Command } from "commander";
import pLimit from "p-limit";
import type { CliContext } from "../context";
import { printRows } from "../output";

/** Pages asked about at once: enough to be quick over hundreds of pages, gentle on Meta's rate limits. */
const CONCURRENCY = 4;

export function registerSubscriptionCommands(program: Command, context: CliContext) {
  const subscriptions = program
    .command("subscriptions")
    .description("ask Meta whether each page is subscribed, and repair it on the page's own endpoint");

  const subscriptionContext = async (): Promise<SubscriptionContext> => ({
    db: context.db(),
    cipher: context.cipher(),
    ...context.platforms(),
    bus: await context.bus(),
    // Each failure is a row of the table already; only errors beyond it belong in the log.
    log: context.log().child({}, { level: "error" }),
  });

  subscriptions
    .command("check")
    .description(
      "ask Meta now about every connected page (GET /{page-id}/subscribed_apps); exit code 1 if any page is not fully subscribed",
    )
    .option("--json", "print JSON")
    .action(async (options: { json?: boolean }) => {
      const ctx = {
        db: context.db(),
        cipher: context.cipher(),
        ...context.platforms(),
      };
      const pages = (await listPages(ctx.db)).filter((p) => p.status !== "disabled");
      const limit = pLimit(CONCURRENCY);
      const rows = await Promise.all(
        pages.map((page) =>
          limit(async () => {
            const { view, problem } = await inspectSubscription(ctx, page.pageId);
            return {
              page: page.pageId,
              name: page.name,
              pageStatus: page.status,
              subscribed: view === undefined ? null : view.complete,
              fields: view?.subscribedFields ?? null,
              missingFields: view?.missingFields ?? null,
              problem,
            };
          }),
        ),
      );
      printRows(
        options.json
          ? rows
          : rows.map((r) => ({
              ...r,
              subscribed: yesNo(r.subscribed),
              fields: wrapList(r.fields),
              problem: wrap(r.problem),
            })),
        ["page", "name", "subscribed", "fields", "problem"],
        options.json === true,
      );
      if (rows.some((r) => r.subscribed !== true)) process.exitCode = 1;
    });

  subscriptions
    .command("resubscribe-all")
    .description(
      "subscribe every active page again (POST /{page-id}/subscribed_apps with its own token), verify, and print what changed",
    )
    .option("--page-id <id>", "only this page")
    .option("--json", "print JSON")
    .action(async (options: { pageId?: string; json?: boolean }) => {
      const ctx = await subscriptionContext();
      const pages = selectPages(await listPages(ctx.db), options.pageId);
      const limit = pLimit(CONCURRENCY);
      const results = await Promise.all(
        pages.map((page) =>
          limit(async () => ({ page, result: await reconcileSubscription(ctx, page.pageId, "resubscribe") })),
        ),
      );
      const rows = results.map(({ page, result }) => ({
        page: page.pageId,
        name: page.name,
        before: result.before,
        after: result.after,
        change: changeOf(result),
        status: result.status,
        problem: result.problem,
      }));
      printRows(
        options.json
          ? rows
          : rows.map((r) => ({
              ...r,
              before: wrapList(r.before),
              after: wrapList(r.after),
              change: wrap(r.change),
              problem: wrap(r.problem),
            })),
        ["page", "name", "before", "after", "change", "problem"],
        options.json === true,
      );
      if (results.some(({ result }) => result.action === "failed")) process.exitCode = 1;
    });
}

function selectPages(pages: PageOverview[], pageId: string | undefined): PageOverview[] {
  if (pageId === undefined) return pages.filter((p) => p.status === "active");
  const page = pages.find((p) => p.pageId === pageId);
  if (!page) throw new Error(`page ${pageId} is not connected`);
  if (page.status === "disabled") throw new Error(`page ${pageId} is disconnected; connect it first`);
  return [page];
}

const CELL_WIDTH = 44;

/** A field list as lines of at most CELL_WIDTH characters, so the table fits a terminal. */
function wrapList(items: string[] | null): string | null {
  if (items === null) return null;
  if (items.length === 0) return "(none)";
  return wrap(items.join(", "));
}

function wrap(text: string | null): string | null {
  if (text === null) return null;
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line && line.length + 1 + word.length > CELL_WIDTH) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  lines.push(line);
  return lines.join("\n");
}

function yesNo(value: boolean | null): string {
  if (value === null) return "unknown";
  return value ? "yes" : "no";
}

/** What the re-subscription changed at Meta, in words an operator scans. */
function changeOf(result: ReconcileResult): string {
  if (result.action === "failed" || result.after === null) return "failed";
  if (result.before === null) return "subscribed";
  const before = new Set(result.before);
  const after = new Set(result.after);
  const added = result.after.filter((f) => !before.has(f));
  const removed = result.before.filter((f) => !after.has(f));
  if (result.before.length === 0) return "subscribed (was not)";
  const parts = [
    ...(added.length > 0 ? [`added ${added.join(", ")}`] : []),
    ...(removed.length > 0 ? [`removed ${removed.join(", ")}`] : []),
  ];
  return parts.length > 0 ? parts.join("; ") : "unchanged";
}
