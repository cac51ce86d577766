import { SendMessageRequest } from "@switchboard/contracts";
import { queueSend } from "@switchboard/send-queue";
import type { Command } from "commander";
import type { CliContext } from "../context";

export function registerMessageCommands(program: Command, context: CliContext) {
  const messages = program.command("messages").description("messages of Switchboard's conversations");

  messages
    .command("send")
    .description(
      "queue a text message to a person through a page (the send worker sends it) and print its id",
    )
    .requiredOption("--page-id <id>", "Facebook Page id")
    .requiredOption("--psid <id>", "the person's page-scoped id")
    .requiredOption("--text <text>", "the message")
    .option("--tag <tag>", "send as MESSAGE_TAG with this tag (e.g. HUMAN_AGENT), outside the 24-hour window")
    .option("--idempotency-key <key>", "a repeat with the same key sends nothing new")
    .action(
      async (options: {
        pageId: string;
        psid: string;
        text: string;
        tag?: string;
        idempotencyKey?: string;
      }) => {
        const content = SendMessageRequest.parse({
          text: options.text,
          ...(options.tag ? { messaging_type: "MESSAGE_TAG", tag: options.tag } : {}),
        });
        const queued = await queueSend(
          { db: context.db(), bus: await context.bus() },
          {
            pageId: options.pageId,
            psid: options.psid,
            content,
            origin: "cli",
            ...(options.idempotencyKey ? { idempotencyKey: options.idempotencyKey } : {}),
          },
        );
        if (queued.replayed) console.error(`already queued with this key (status ${queued.status})`);
        console.log(queued.id);
      },
    );
}
