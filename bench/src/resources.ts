import { readdirSync, readFileSync } from "node:fs";

/** Linux reports CPU time in clock ticks; 100 per second on every mainstream kernel config. */
const TICKS_PER_SECOND = 100;

export interface ProcessUsage {
  /** Mean CPU over the window, in % of one core (200 % = both cores of a 2-core machine). */
  cpuPercent: number;
  /** Highest CPU over any one sampling interval, in % of one core. */
  peakCpuPercent: number;
  /** Highest resident set size seen, in MiB. */
  peakRssMiB: number;
}

function cpuTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name, which is in parentheses and may contain spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]); // utime + stime
  } catch {
    return undefined;
  }
}

function rssKiB(pid: number): number | undefined {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Processes of the machine whose command name is `comm` (e.g. every `postgres` backend), by reading /proc. */
export function pidsNamed(comm: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, "utf8").trim() === comm) pids.push(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return pids;
}

/**
 * Samples CPU and RSS of named groups of processes (one service, or every Postgres backend) every
 * `intervalMs` until stop(). A group's CPU and RSS are the sums over its processes.
 */
export function sampleResources(groups: Record<string, number[]>, intervalMs = 250) {
  const first = new Map<string, { ticks: number; at: number }>();
  const last = new Map<string, { ticks: number; at: number }>();
  const peakRss = new Map<string, number>();
  const peakCpu = new Map<string, number>();
  const sample = () => {
    const at = performance.now();
    for (const [name, pids] of Object.entries(groups)) {
      let ticks = 0;
      let rss = 0;
      for (const pid of pids) {
        ticks += cpuTicks(pid) ?? 0;
        rss += rssKiB(pid) ?? 0;
      }
      if (rss === 0) continue;
      const previous = last.get(name);
      if (previous && at > previous.at) {
        const percent = ((ticks - previous.ticks) / TICKS_PER_SECOND / ((at - previous.at) / 1000)) * 100;
        peakCpu.set(name, Math.max(peakCpu.get(name) ?? 0, percent));
      }
      if (!first.has(name)) first.set(name, { ticks, at });
      last.set(name, { ticks, at });
      peakRss.set(name, Math.max(peakRss.get(name) ?? 0, rss));
    }
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  return {
    stop(): Record<string, ProcessUsage> {
      clearInterval(timer);
      sample();
      const out: Record<string, ProcessUsage> = {};
      for (const name of Object.keys(groups)) {
        const a = first.get(name);
        const b = last.get(name);
        if (!a || !b) continue;
        const seconds = (b.at - a.at) / 1000;
        out[name] = {
          cpuPercent: round(seconds > 0 ? ((b.ticks - a.ticks) / TICKS_PER_SECOND / seconds) * 100 : 0),
          peakCpuPercent: round(peakCpu.get(name) ?? 0),
          peakRssMiB: round((peakRss.get(name) ?? 0) / 1024),
        };
      }
      return out;
    },
  };
}

/** Whole-machine CPU busy % (all cores, 100 % = every core busy) between two calls, from /proc/stat. */
export function machineCpu() {
  const read = () => {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!;
    const values = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = (values[3] ?? 0) + (values[4] ?? 0);
    const total = values.reduce((a, b) => a + b, 0);
    return { idle, total };
  };
  const start = read();
  return {
    busyPercent(): number {
      const end = read();
      const total = end.total - start.total;
      return total > 0 ? round((1 - (end.idle - start.idle) / total) * 100) : 0;
    },
  };
}

export const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;
