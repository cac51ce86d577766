import { readFileSync } from "node:fs";

/**
 * Summarises a V8 `.cpuprofile` (from `pnpm bench --cpu-prof`): self time per function and
 * inclusive time of the ingress hot-path functions, so a before/after comparison is one command.
 * Usage: `pnpm --filter @switchboard/bench profile <file.cpuprofile> [top]`.
 */
interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const [file, topArg] = process.argv.slice(2).filter((a) => a !== "--");
if (!file) {
  console.error("usage: profile <file.cpuprofile> [top]");
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const self = new Map<number, number>();
profile.samples.forEach((id, i) => {
  self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
});
const total = [...self.values()].reduce((a, b) => a + b, 0);

const label = (n: ProfileNode) => {
  const url = n.callFrame.url
    .replace(/^.*node_modules\/\.pnpm\/([^/]+)\/node_modules\//, "$1:")
    .replace(/^file:\/\/.*\/(apps|packages)\//, "$1/");
  return `${n.callFrame.functionName || "(anonymous)"} ${url}:${n.callFrame.lineNumber + 1}`;
};

const selfByLabel = new Map<string, number>();
const inclusiveByLabel = new Map<string, number>();
for (const [id, time] of self) {
  const node = byId.get(id)!;
  selfByLabel.set(label(node), (selfByLabel.get(label(node)) ?? 0) + time);
  const seen = new Set<string>();
  for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
    const l = label(byId.get(at)!);
    if (seen.has(l)) continue;
    seen.add(l);
    inclusiveByLabel.set(l, (inclusiveByLabel.get(l) ?? 0) + time);
  }
}

const pct = (t: number) => `${((t / total) * 100).toFixed(1).padStart(5)} %`;
const top = Number(topArg ?? 30);
console.log(`total sampled ${(total / 1000).toFixed(0)} ms`);
console.log("\nself time:");
for (const [l, t] of [...selfByLabel].sort((a, b) => b[1] - a[1]).slice(0, top))
  console.log(`${pct(t)}  ${l}`);
console.log("\ninclusive time:");
for (const [l, t] of [...inclusiveByLabel].sort((a, b) => b[1] - a[1]).slice(0, top))
  console.log(`${pct(t)}  ${l}`);
