import { connectPage, disconnectPage, listPages, rotatePageTokens } from "@switchboard/pages";
import type { Command } from "commander";
import type { CliContext } from "../context";
import { printRows, readStdin } from "../output";

export function registerPageCommands(program: Command, context: CliContext) {
  const pages = program.command("pages").description("connect, disconnect and list Facebook Pages");

  pages
    .command("connect")
    .description(
      "store a page's token (encrypted) and subscribe it; the token comes from stdin or --token-env",
    )
    .requiredOption("--page-id <id>", "Facebook Page id")
    .requiredOption("--name <name>", "a name operators recognise")
    .requiredOption("--company <id>", "the company that owns the page")
    .option("--token-env <VAR>", "read the page token from this environment variable instead of stdin")
    .action(async (options: { pageId: string; name: string; company: string; tokenEnv?: string }) => {
      const token = options.tokenEnv ? context.variable(options.tokenEnv) : await readStdin();
      if (!token)
        throw new Error(
          `no token: ${options.tokenEnv ? `$${options.tokenEnv} is empty` : "stdin was empty"}`,
        );
      const { page, event } = await connectPage(
        { db: context.db(), bus: await context.bus(), cipher: context.cipher() },
        { pageId: options.pageId, name: options.name, companyId: options.company, token },
      );
      console.log(
        `${event === "page.connected" ? "connected" : "updated token of"} page ${page.pageId} (${page.name}) for ${page.companyId}`,
      );
    });

  pages
    .command("disconnect")
    .description("stop routing a page and unsubscribe it")
    .requiredOption("--page-id <id>", "Facebook Page id")
    .action(async (options: { pageId: string }) => {
      const page = await disconnectPage({ db: context.db(), bus: await context.bus() }, options.pageId);
      console.log(`disconnected page ${page.pageId} (${page.name})`);
    });

  pages
    .command("list")
    .description("every page with its status and subscription")
    .option("--json", "print JSON")
    .action(async (options: { json?: boolean }) => {
      const rows = await listPages(context.db(), context.cipher());
      printRows(
        rows.map((r) => ({
          ...r,
          subscription: r.subscriptionStatus,
          fields: r.subscribedFields,
          key: r.tokenKeyId,
        })),
        ["pageId", "name", "companyId", "status", "subscription", "fields", "key"],
        options.json === true,
      );
    });

  pages
    .command("rotate-tokens")
    .description(
      "re-encrypt every page token with the first key of TOKEN_ENCRYPTION_KEYS (then old keys can go)",
    )
    .action(async () => {
      const { rotated, current } = await rotatePageTokens(context.db(), context.cipher());
      console.log(
        `re-encrypted ${rotated} token(s) with key ${context.cipher().currentKeyId}; ${current} already on it`,
      );
    });
}
