import { collectDefaultMetrics, Registry } from "prom-client";

export { Counter, Gauge, Histogram, type Registry } from "prom-client";

/** One registry per service instance (not prom-client's global), so tests can build several. */
export function createMetricsRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry, prefix: "switchboard_" });
  return registry;
}

/** Buckets for latencies from sub-millisecond to a minute, in seconds. */
export const LATENCY_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

/** The `page_id` value shared by every page beyond a service's per-page series limit. */
export const OTHER_PAGES = "_other";

/**
 * Bounds the `page_id` label: the first `limit` pages a process sees keep series of their own, every
 * further page shares `page_id="_other"`. With 100,000 connected pages, /metrics stays the size of
 * `limit` pages; per-page detail beyond it comes from the database (the console, `sb pages list`).
 */
export function createPageSeriesLimit(limit = 100): (pageId: string) => string {
  const kept = new Set<string>();
  return (pageId) => {
    if (kept.has(pageId)) return pageId;
    if (kept.size >= limit) return OTHER_PAGES;
    kept.add(pageId);
    return pageId;
  };
}

type Labels = Record<string, string | number>;
interface PageLabelledMetric {
  inc?: (...args: never[]) => unknown;
  dec?: (...args: never[]) => unknown;
  set?: (...args: never[]) => unknown;
  observe?: (...args: never[]) => unknown;
  labels?: (...args: never[]) => unknown;
  remove?: (...args: never[]) => unknown;
}

/**
 * Routes every `page_id` label a metric is given through `pageLabel` (see createPageSeriesLimit), so no
 * call site can add a series per page. Returns the same metric.
 */
export function boundPageLabel<M extends PageLabelledMetric>(
  metric: M,
  pageLabel: (pageId: string) => string,
): M {
  const target = metric as unknown as Record<string, unknown>;
  // `labels("123", …)` and `remove("123", …)` name labels by position.
  const position = ((metric as { labelNames?: string[] }).labelNames ?? []).indexOf("page_id");
  for (const method of ["inc", "dec", "set", "observe", "labels", "remove"] as const) {
    const original = target[method];
    if (typeof original !== "function") continue;
    target[method] = function (this: unknown, ...args: unknown[]) {
      const [first, ...rest] = args;
      if (first && typeof first === "object" && "page_id" in (first as Labels)) {
        const labels = first as Labels;
        return original.call(metric, { ...labels, page_id: pageLabel(String(labels.page_id)) }, ...rest);
      }
      if (
        (method === "labels" || method === "remove") &&
        position >= 0 &&
        typeof args[position] === "string"
      ) {
        const positional = [...args];
        positional[position] = pageLabel(String(args[position]));
        return original.call(metric, ...positional);
      }
      return original.call(metric, ...args);
    };
  }
  return metric;
}

/** `boundPageLabel` for every metric of a service's metrics object that has a `page_id` label. */
export function boundPageLabels<T extends Record<string, unknown>>(
  pageLabel: (pageId: string) => string,
  metrics: T,
): T {
  for (const metric of Object.values(metrics)) {
    const labelNames = (metric as { labelNames?: string[] } | null)?.labelNames;
    if (Array.isArray(labelNames) && labelNames.includes("page_id")) {
      boundPageLabel(metric as PageLabelledMetric, pageLabel);
    }
  }
  return metrics;
}
