import { describe, expect, it } from "vitest";
import {
  boundPageLabel,
  Counter,
  createMetricsRegistry,
  createPageSeriesLimit,
  Gauge,
  OTHER_PAGES,
} from "./metrics";

describe("per-page series", () => {
  it("stay bounded at 100,000 pages: the first pages keep their own, the rest share _other", async () => {
    const registry = createMetricsRegistry("test");
    const pageLabel = createPageSeriesLimit(100);
    const entries = boundPageLabel(
      new Counter({
        name: "t_entries_total",
        help: "h",
        labelNames: ["page_id", "kind"],
        registers: [registry],
      }),
      pageLabel,
    );
    const last = boundPageLabel(
      new Gauge({ name: "t_last_seconds", help: "h", labelNames: ["page_id"], registers: [registry] }),
      pageLabel,
    );
    for (let i = 0; i < 100_000; i++) {
      const page_id = String(100_000_000_000_000 + i);
      entries.inc({ page_id, kind: "message" });
      last.set({ page_id }, i);
    }
    const text = await registry.metrics();
    expect(Buffer.byteLength(text)).toBeLessThan(1_000_000);
    const series = text.split("\n").filter((line) => line.startsWith("t_entries_total{"));
    expect(series).toHaveLength(101);
    expect(text).toContain(`t_entries_total{page_id="${OTHER_PAGES}",kind="message",service="test"} 99900`);
    expect(text).toContain('t_entries_total{page_id="100000000000000",kind="message",service="test"} 1');
    expect(text).toContain(`t_last_seconds{page_id="${OTHER_PAGES}",service="test"} 99999`);
  });

  it("bound labels given by position too (a cached child per page)", async () => {
    const registry = createMetricsRegistry("test");
    const counter = boundPageLabel(
      new Counter({ name: "t_children_total", help: "h", labelNames: ["page_id"], registers: [registry] }),
      createPageSeriesLimit(2),
    );
    for (const page of ["1", "2", "3", "4"]) counter.labels(page).inc();
    const text = await registry.metrics();
    expect(text).toContain('t_children_total{page_id="2",service="test"} 1');
    expect(text).toContain(`t_children_total{page_id="${OTHER_PAGES}",service="test"} 2`);
  });

  it("leaves metrics without a page label alone", async () => {
    const registry = createMetricsRegistry("test");
    const counter = boundPageLabel(
      new Counter({ name: "t_plain_total", help: "h", labelNames: ["outcome"], registers: [registry] }),
      createPageSeriesLimit(1),
    );
    counter.inc({ outcome: "a" });
    counter.inc({ outcome: "b" }, 2);
    counter.inc();
    expect(await registry.metrics()).toContain('t_plain_total{outcome="b",service="test"} 2');
  });
});
