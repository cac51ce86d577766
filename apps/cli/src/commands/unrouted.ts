import { listStored, replayStored, type StoredMessage } from "@switchboard/bus";
import { Headers } from "@switchboard/contracts";
import type { Command } from "commander";
import type { CliContext } from "../context";
import { printRows } from "../output";

const say = (line: string) => process.stdout.write(`${line}\n`);

/** Bodies the ingress could not split into entries are kept under this pseudo page; they are not entries. */
const INVALID_BODIES = "_invalid";

function describeStored(message: StoredMessage, subjectPrefix: string) {
  let items: number | null = null;
  try {
    const entry = JSON.parse(new TextDecoder().decode(message.data)) as {
      messaging?: unknown[];
      standby?: unknown[];
    };
    items = (entry.messaging?.length ?? 0) + (entry.standby?.length ?? 0);
  } catch {
    // Undecodable: shown with no item count.
  }
  return {
    seq: message.seq,
    pageId: message.headers[Headers.pageId] ?? message.subject.slice(subjectPrefix.length),
    reason: message.reason ?? null,
    parkedAt: message.time,
    receivedAt: message.headers[Headers.receivedAt]
      ? new Date(Number(message.headers[Headers.receivedAt]))
      : null,
    items,
    traceId: message.headers[Headers.traceId] ?? null,
  };
}

export function registerUnroutedCommands(program: Command, context: CliContext) {
  const unrouted = program
    .command("unrouted")
    .description("entries no page could take (unknown, disconnected, undecodable), kept for replay");

  const read = async (pageId: string | undefined) => {
    const bus = await context.bus();
    const { streams, subjects } = bus.topology;
    const stored = await listStored(
      bus.js,
      bus.jsm,
      streams.unrouted.name,
      pageId ? subjects.unrouted(pageId) : subjects.unroutedAll,
    );
    return { bus, stored, prefix: subjects.unrouted("") };
  };

  unrouted
    .command("list")
    .description("the waiting entries with the reason each was parked")
    .option("--page-id <id>", "only this page's entries")
    .option("--json", "print JSON")
    .action(async (options: { pageId?: string; json?: boolean }) => {
      const { stored, prefix } = await read(options.pageId);
      printRows(
        stored.map((m) => describeStored(m, prefix)),
        ["seq", "pageId", "reason", "parkedAt", "items", "traceId"],
        options.json === true,
      );
    });

  unrouted
    .command("replay")
    .description(
      "send waiting entries back to the page-router (entries of a page still unknown are parked again)",
    )
    .option("--page-id <id>", "only this page's entries")
    .option(
      "--reason <code>",
      "only entries parked for this reason (unknown_page, page_disabled, platform_mismatch, undecodable)",
    )
    .action(async (options: { pageId?: string; reason?: string }) => {
      const { bus, stored, prefix } = await read(options.pageId);
      const invalid = stored.filter((m) => m.subject === `${prefix}${INVALID_BODIES}`);
      const entries = stored.filter(
        (m) =>
          m.subject !== `${prefix}${INVALID_BODIES}` &&
          (!options.reason || (m.reason ?? "").split(":")[0] === options.reason),
      );
      const { replayed, failed } = await replayStored(
        bus.js,
        bus.jsm,
        bus.topology.streams.unrouted.name,
        entries,
      );
      say(`replayed ${replayed} entries${failed ? `, ${failed} failed (still stored)` : ""}`);
      if (invalid.length > 0) {
        say(
          `${invalid.length} webhook bodies that failed validation are kept: inspect them with \`sb unrouted list --page-id ${INVALID_BODIES}\``,
        );
      }
      if (failed > 0) process.exitCode = 1;
    });
}
