import { createMetricsRegistry, Gauge, OTHER_PAGES } from "@switchboard/observability";
import { describe, expect, it } from "vitest";
import { setLargestPages } from "./metrics";

describe("per-page JetStream gauges", () => {
  it("keep the largest pages by name and sum the rest as _other, however many pages wait", async () => {
    const registry = createMetricsRegistry("console");
    const gauge = new Gauge({ name: "t_waiting", help: "h", labelNames: ["page_id"], registers: [registry] });
    const counts = new Map(
      Array.from({ length: 100_000 }, (_, i) => [String(500_000 + i), i < 3 ? 1000 - i : 1]),
    );
    setLargestPages(gauge, counts, 3);
    const text = await registry.metrics();
    const series = text.split("\n").filter((l) => l.startsWith("t_waiting{"));
    expect(series).toEqual([
      't_waiting{page_id="500000",service="console"} 1000',
      't_waiting{page_id="500001",service="console"} 999',
      't_waiting{page_id="500002",service="console"} 998',
      `t_waiting{page_id="${OTHER_PAGES}",service="console"} 99997`,
    ]);
  });
});
