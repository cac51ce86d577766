import { parseDuration } from "@switchboard/config";
import { WebhookEventType } from "@switchboard/contracts";
import {
  createEndpoint,
  disableEndpoint,
  listEndpointsWithCompany,
  replayDeliveries,
} from "@switchboard/webhooks";
import type { Command } from "commander";
import type { CliContext } from "../context";
import { printRows } from "../output";

/** `--since 2026-12-01T10:00:00Z` or `--since 2h` (that long ago). */
export function parseSince(value: string, now = Date.now()): Date {
  const ago = parseDuration(value);
  if (ago !== undefined && !/^\d+$/.test(value.trim())) return new Date(now - ago);
  const at = new Date(value);
  if (Number.isNaN(at.getTime()))
    throw new Error(`--since must be an ISO time or a duration such as 2h, got "${value}"`);
  return at;
}

export function registerWebhookCommands(program: Command, context: CliContext) {
  const webhooks = program
    .command("webhooks")
    .description("outbound webhook endpoints of each company (what the webhook-dispatcher delivers to)");
  const policy = () => ({ allowPrivateTargets: context.config().WEBHOOK_ALLOW_PRIVATE_TARGETS });

  webhooks
    .command("list")
    .description("endpoints with their health: pending deliveries, oldest pending, failing since")
    .option("--company <id>", "only this company's endpoints")
    .option("--json", "print JSON")
    .action(async (options: { company?: string; json?: boolean }) => {
      const endpoints = await listEndpointsWithCompany(context.db(), options.company);
      printRows(
        endpoints.map((endpoint) => ({
          id: endpoint.id,
          company: endpoint.companyId,
          url: endpoint.url,
          events: endpoint.events ?? "all",
          enabled: endpoint.enabled,
          pending: endpoint.health.pending,
          oldestPendingAt: endpoint.health.oldestPendingAt,
          failingSince: endpoint.health.failingSince,
          disabledReason: endpoint.disabledReason,
        })),
        [
          "id",
          "company",
          "url",
          "events",
          "enabled",
          "pending",
          "oldestPendingAt",
          "failingSince",
          "disabledReason",
        ],
        options.json === true,
      );
    });

  webhooks
    .command("create")
    .description("register an endpoint for a company and print its signing secret once")
    .requiredOption("--company <id>", "the company whose pages' events it receives")
    .requiredOption("--url <url>", "https:// URL that receives the deliveries")
    .option("--events <types>", `comma list (default: all): ${WebhookEventType.options.join(", ")}`)
    .option("--description <text>", "what the endpoint is for")
    .action(async (options: { company: string; url: string; events?: string; description?: string }) => {
      const events = options.events
        ?.split(",")
        .map((type) => type.trim())
        .filter(Boolean)
        .map((type) => WebhookEventType.parse(type));
      const created = await createEndpoint(
        { db: context.db(), cipher: context.cipher(), policy: policy() },
        options.company,
        {
          url: options.url,
          ...(events?.length ? { events } : {}),
          ...(options.description ? { description: options.description } : {}),
        },
      );
      console.error(
        `created webhook endpoint ${created.id} for ${options.company}; its secret is shown only now:`,
      );
      console.log(created.secret);
    });

  webhooks
    .command("disable")
    .description(
      "pause an endpoint: its deliveries wait (up to WEBHOOK_DELIVERY_RETENTION) until PATCH enabled=true",
    )
    .requiredOption("--id <id>", "the endpoint's id (from webhooks list)")
    .option("--reason <text>", "shown to the company", "disabled by an operator")
    .action(async (options: { id: string; reason: string }) => {
      if (!(await disableEndpoint(context.db(), options.id, options.reason))) {
        throw new Error(`no webhook endpoint with id ${options.id}`);
      }
      console.log(`disabled webhook endpoint ${options.id}`);
    });

  webhooks
    .command("replay")
    .description("deliver an endpoint's events again since a time, in their original order")
    .requiredOption("--endpoint <id>", "the endpoint's id")
    .requiredOption("--since <time>", "ISO time, or a duration ago such as 2h")
    .action(async (options: { endpoint: string; since: string }) => {
      const since = parseSince(options.since);
      const count = await replayDeliveries(context.db(), options.endpoint, since);
      console.log(`queued ${count} deliveries of ${options.endpoint} since ${since.toISOString()} again`);
    });
}
