import { listStored, replayStored } from "@switchboard/bus";
import { Headers } from "@switchboard/contracts";
import type { Command } from "commander";
import type { CliContext } from "../context";
import { printRows } from "../output";

const say = (line: string) => process.stdout.write(`${line}\n`);

export function registerDeadLetterCommands(program: Command, context: CliContext) {
  const dlq = program
    .command("dlq")
    .description("messages a service could never process, with the reason; replay them once fixed");

  const read = async (stage: string | undefined) => {
    const bus = await context.bus();
    const { streams, subjects } = bus.topology;
    const stored = await listStored(
      bus.js,
      bus.jsm,
      streams.deadLetter.name,
      stage ? subjects.deadLetter(stage) : subjects.deadLetters,
    );
    return { bus, stored };
  };

  dlq
    .command("list")
    .description("every dead letter: stage, reason, original subject, attempts")
    .option("--stage <stage>", "only this stage (page-router, message-service, …)")
    .option("--json", "print JSON")
    .action(async (options: { stage?: string; json?: boolean }) => {
      const { stored } = await read(options.stage);
      printRows(
        stored.map((m) => ({
          seq: m.seq,
          stage: m.headers[Headers.stage] ?? null,
          reason: m.reason ?? null,
          subject: m.headers[Headers.originalSubject] ?? null,
          failedAt: m.headers[Headers.failedAt] ?? m.time,
          attempts: m.headers[Headers.deliveries] ? Number(m.headers[Headers.deliveries]) : null,
          traceId: m.headers[Headers.traceId] ?? null,
        })),
        ["seq", "stage", "reason", "subject", "failedAt", "attempts"],
        options.json === true,
      );
    });

  dlq
    .command("replay")
    .description("publish dead letters again to their original subject, then remove them from the DLQ")
    .option("--stage <stage>", "only this stage")
    .option("--seq <seq...>", "only these sequence numbers (from `sb dlq list`)")
    .action(async (options: { stage?: string; seq?: string[] }) => {
      const { bus, stored } = await read(options.stage);
      const wanted = options.seq ? new Set(options.seq.flatMap((s) => s.split(",")).map(Number)) : undefined;
      const chosen = wanted ? stored.filter((m) => wanted.has(m.seq)) : stored;
      if (wanted && chosen.length < wanted.size) {
        const found = new Set(chosen.map((m) => m.seq));
        process.stderr.write(
          `not in the DLQ${options.stage ? ` for ${options.stage}` : ""}: ${[...wanted].filter((s) => !found.has(s)).join(", ")}\n`,
        );
        process.exitCode = 1;
      }
      const { replayed, failed } = await replayStored(
        bus.js,
        bus.jsm,
        bus.topology.streams.deadLetter.name,
        chosen,
      );
      say(`replayed ${replayed} dead letters${failed ? `, ${failed} failed (still stored)` : ""}`);
      if (failed > 0) process.exitCode = 1;
    });
}
