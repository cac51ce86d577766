import { Platform } from "@switchboard/contracts";
import { connectPage, disconnectPage, listPages, rotatePageTokens } from "@switchboard/pages";
import { type Command, InvalidArgumentError } from "commander";
import type { CliContext } from "../context";
import { printRows, readStdin } from "../output";

export function registerPageCommands(program: Command, context: CliContext) {
  const pages = program
    .command("pages")
    .description("connect, disconnect and list Facebook Pages and Instagram accounts");

  pages
    .command("connect")
    .description(
      "store a page's token (encrypted) and subscribe it; the token comes from stdin or --token-env",
    )
    .requiredOption(
      "--page-id <id>",
      "Facebook Page id; for Instagram, the account's user_id (the entry.id of its webhooks, from GET /me?fields=user_id)",
    )
    .requiredOption("--name <name>", "a name operators recognise")
    .requiredOption("--company <id>", "the company that owns the page")
    .option(
      "--platform <platform>",
      "messenger (a Facebook Page) or instagram (an Instagram professional account)",
      parsePlatform,
      "messenger",
    )
    .option(
      "--token-expires-at <ISO>",
      "when the token expires, if known (Instagram: 60 days after issue)",
      parseDate,
    )
    .option("--token-env <VAR>", "read the page token from this environment variable instead of stdin")
    .action(
      async (options: {
        pageId: string;
        name: string;
        company: string;
        platform: Platform;
        tokenExpiresAt?: Date;
        tokenEnv?: string;
      }) => {
        const token = options.tokenEnv ? context.variable(options.tokenEnv) : await readStdin();
        if (!token)
          throw new Error(
            `no token: ${options.tokenEnv ? `$${options.tokenEnv} is empty` : "stdin was empty"}`,
          );
        const { page, event } = await connectPage(
          { db: context.db(), bus: await context.bus(), cipher: context.cipher() },
          {
            pageId: options.pageId,
            name: options.name,
            companyId: options.company,
            token,
            platform: options.platform,
            ...(options.tokenExpiresAt ? { tokenExpiresAt: options.tokenExpiresAt } : {}),
          },
        );
        const what = page.platform === "instagram" ? "Instagram account" : "page";
        console.log(
          `${event === "page.connected" ? "connected" : "updated token of"} ${what} ${page.pageId} (${page.name}) for ${page.companyId}`,
        );
      },
    );

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
          tokenExpires: r.tokenExpiresAt?.toISOString() ?? null,
        })),
        [
          "pageId",
          "name",
          "platform",
          "companyId",
          "status",
          "subscription",
          "fields",
          "key",
          "tokenExpires",
        ],
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

function parsePlatform(value: string): Platform {
  const parsed = Platform.safeParse(value);
  if (!parsed.success) throw new InvalidArgumentError("messenger or instagram");
  return parsed.data;
}

function parseDate(value: string): Date {
  const at = new Date(value);
  if (Number.isNaN(at.getTime()))
    throw new InvalidArgumentError("an ISO 8601 time, e.g. 2027-01-31T00:00:00Z");
  return at;
}
