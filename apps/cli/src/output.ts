import Table from "cli-table3";

/** Prints rows as a readable table, or as JSON for scripts. */
export function printRows(
  rows: Array<Record<string, unknown>>,
  columns: string[],
  json: boolean,
  out = process.stdout,
) {
  if (json) {
    out.write(`${JSON.stringify(rows, null, 2)}\n`);
    return;
  }
  if (rows.length === 0) {
    out.write("(none)\n");
    return;
  }
  const table = new Table({ head: columns, style: { head: [], border: [] } });
  for (const row of rows) table.push(columns.map((c) => formatCell(row[c])));
  out.write(`${table.toString()}\n`);
}

function formatCell(value: unknown): string {
  if (value === null || value === undefined) return "-";
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.join(", ");
  return String(value);
}

/** Reads a secret piped on stdin (never from argv, which lands in shell history and `ps`). */
export async function readStdin(input: NodeJS.ReadStream = process.stdin): Promise<string> {
  if (input.isTTY) throw new Error("pipe the page token on stdin, or name a variable with --token-env");
  const chunks: Buffer[] = [];
  for await (const chunk of input) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8").trim();
}
