import { newApiKey } from "@switchboard/contracts";
import type { Command } from "commander";
import type { CliContext } from "../context";
import { printRows } from "../output";

export function registerApiKeyCommands(program: Command, context: CliContext) {
  const apiKeys = program.command("api-keys").description("API keys of the Conversations API, per company");

  apiKeys
    .command("create")
    .description("create a key for a company and print it once (only its SHA-256 is stored)")
    .requiredOption("--company <id>", "the company whose pages the key can read and send through")
    .option("--name <name>", "what the key is for, e.g. the product or environment")
    .action(async (options: { company: string; name?: string }) => {
      const { key, keyHash, prefix } = newApiKey();
      const created = await context.db().apiKey.create({
        data: { companyId: options.company, name: options.name ?? null, keyHash, prefix },
      });
      console.error(
        `created API key ${created.id} (${prefix}…) for ${created.companyId}; it is shown only now:`,
      );
      console.log(key);
    });

  apiKeys
    .command("list")
    .description("keys with their prefix, company and last use (never the key)")
    .option("--company <id>", "only this company's keys")
    .option("--json", "print JSON")
    .action(async (options: { company?: string; json?: boolean }) => {
      const keys = await context.db().apiKey.findMany({
        where: options.company ? { companyId: options.company } : {},
        orderBy: [{ companyId: "asc" }, { createdAt: "asc" }],
        select: {
          id: true,
          companyId: true,
          name: true,
          prefix: true,
          createdAt: true,
          lastUsedAt: true,
          revokedAt: true,
        },
      });
      printRows(
        keys,
        ["id", "prefix", "companyId", "name", "createdAt", "lastUsedAt", "revokedAt"],
        options.json === true,
      );
    });

  apiKeys
    .command("revoke")
    .description("revoke a key: requests with it get 401 from now on")
    .requiredOption("--id <id>", "the key's id (from api-keys list)")
    .action(async (options: { id: string }) => {
      const { count } = await context.db().apiKey.updateMany({
        where: { id: options.id, revokedAt: null },
        data: { revokedAt: new Date() },
      });
      if (count === 0) throw new Error(`no active API key with id ${options.id}`);
      console.log(`revoked API key ${options.id}`);
    });
}
