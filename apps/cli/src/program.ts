import { Command } from "commander";
import { registerApiKeyCommands } from "./commands/api-keys";
import { registerDeadLetterCommands } from "./commands/dlq";
import { registerMessageCommands } from "./commands/messages";
import { registerPageCommands } from "./commands/pages";
import { registerSubscriptionCommands } from "./commands/subscriptions";
import { registerUnroutedCommands } from "./commands/unrouted";
import { registerWebhookCommands } from "./commands/webhooks";
import type { CliContext } from "./context";

/** `pnpm sb …`: the operator CLI. Each command group registers itself from src/commands. */
export function buildProgram(context: CliContext): Command {
  const program = new Command("sb").description("Switchboard operator commands").showHelpAfterError();
  registerPageCommands(program, context);
  registerSubscriptionCommands(program, context);
  registerApiKeyCommands(program, context);
  registerMessageCommands(program, context);
  registerUnroutedCommands(program, context);
  registerDeadLetterCommands(program, context);
  registerWebhookCommands(program, context);
  return program;
}
