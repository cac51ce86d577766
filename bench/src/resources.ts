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
  /** CPU time used over the window, in seconds. */
  cpuSeconds?: number;
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
 * `intervalMs` until stop(). A group is a list of pids or a function listing them at each sample, so
 * processes that start during the run (a new Postgres backend) count; CPU counts only time spent
 * between two samples of the same process, so one that exits takes nothing with it.
 */
export function sampleResources(groups: Record<string, number[] | (() => number[])>, intervalMs = 250) {
  const lastTicks = new Map<string, Map<number, number>>();
  const busyTicks = new Map<string, number>();
  const peakRss = new Map<string, number>();
  const peakCpu = new Map<string, number>();
  let first = 0;
  let previousAt = 0;
  const sample = () => {
    const at = performance.now();
    for (const [name, group] of Object.entries(groups)) {
      const pids = typeof group === "function" ? group() : group;
      const before = lastTicks.get(name) ?? new Map<number, number>();
      const now = new Map<number, number>();
      let delta = 0;
      let rss = 0;
      for (const pid of pids) {
        const ticks = cpuTicks(pid);
        const kib = rssKiB(pid);
        if (ticks === undefined || kib === undefined) continue;
        now.set(pid, ticks);
        rss += kib;
        const previous = before.get(pid);
        if (previous !== undefined) delta += ticks - previous;
      }
      lastTicks.set(name, now);
      if (previousAt > 0) {
        busyTicks.set(name, (busyTicks.get(name) ?? 0) + delta);
        const percent = (delta / TICKS_PER_SECOND / ((at - previousAt) / 1000)) * 100;
        peakCpu.set(name, Math.max(peakCpu.get(name) ?? 0, percent));
      }
      peakRss.set(name, Math.max(peakRss.get(name) ?? 0, rss));
    }
    if (first === 0) first = at;
    previousAt = at;
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  return {
    stop(): Record<string, ProcessUsage> {
      clearInterval(timer);
      sample();
      const seconds = (previousAt - first) / 1000;
      const out: Record<string, ProcessUsage> = {};
      for (const name of Object.keys(groups)) {
        if (!peakRss.has(name)) continue;
        out[name] = {
          cpuPercent: round(
            seconds > 0 ? ((busyTicks.get(name) ?? 0) / TICKS_PER_SECOND / seconds) * 100 : 0,
          ),
          peakCpuPercent: round(peakCpu.get(name) ?? 0),
          peakRssMiB: round((peakRss.get(name) ?? 0) / 1024),
          cpuSeconds: round((busyTicks.get(name) ?? 0) / TICKS_PER_SECOND, 2),
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
