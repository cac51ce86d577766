import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { connectBus, deleteStreams, listStored, publishRaw } from "@switchboard/bus";
import { canaryEventOf, Headers, WebhookBody, WebhookEntry, webhookSignature } from "@switchboard/contracts";
import { createLogger, createMetricsRegistry } from "@switchboard/observability";
import { eventually, testServices, uniqueId } from "@switchboard/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCanaryMetrics, judgeCanary, sendCanary, startCanary } from "./canary";

const log = createLogger({ service: "canary-test", level: "silent" });

describe("webhook canary", () => {
  const received: Array<{ body: string; signature: string | undefined }> = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => {
      body += c.toString();
    });
    req.on("end", () => {
      received.push({ body, signature: req.headers["x-hub-signature-256"] as string | undefined });
      res.statusCode = received.length === 1 ? 200 : 503;
      res.end();
    });
  });
  let url: string;

  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/webhooks/facebook`;
  });
  afterAll(() => {
    server.close();
  });

  it("sends a webhook Meta-shaped and signed with the app secret, which the page-router recognises", async () => {
    const registry = createMetricsRegistry("console");
    const metrics = createCanaryMetrics(registry);
    const settings = {
      pageId: "999000000000001",
      ingressUrl: url,
      appSecret: "s3cret",
      intervalMs: 1000,
      timeoutMs: 2000,
    };
    const first = await sendCanary(settings, metrics, log);
    expect(first.outcome).toBe("accepted");
    const { body, signature } = received[0]!;
    expect(signature).toBe(webhookSignature(body, "s3cret"));
    const entry = WebhookEntry.parse(WebhookBody.parse(JSON.parse(body)).entry[0]);
    const event = canaryEventOf(entry, 1_000, 2_000);
    expect(event).toMatchObject({
      canaryId: first.canaryId,
      pageId: "999000000000001",
      receivedAt: 1_000,
      routedAt: 2_000,
    });

    expect((await sendCanary(settings, metrics, log)).outcome).toBe("rejected");
    expect(
      (await sendCanary({ ...settings, ingressUrl: "http://127.0.0.1:9/nothing" }, metrics, log)).outcome,
    ).toBe("unreachable");
    const text = await registry.metrics();
    for (const outcome of ["accepted", "rejected", "unreachable"]) {
      expect(text).toContain(`switchboard_canary_sent_total{outcome="${outcome}",service="console"} 1`);
    }
  });

  it("ignores an ordinary entry and counts a canary older than the freshness bound as stale", () => {
    const ordinary = WebhookEntry.parse({ id: "1", messaging: [{ timestamp: 1, message: { mid: "m_1" } }] });
    expect(canaryEventOf(ordinary, 1, 2)).toBeUndefined();
    const event = { canaryId: "c", pageId: "9", sentAt: 10_000, receivedAt: 10_050, routedAt: 10_080 };
    expect(judgeCanary(event, 10_100, 60_000)).toEqual({
      fresh: true,
      roundTripMs: 100,
      stages: { ingress: 50, router: 30, sink: 20 },
    });
    expect(judgeCanary(event, 10_000 + 60_001, 60_000).fresh).toBe(false);
  });
});

describe("webhook canary sink", () => {
  it("dead-letters a canary event that is not JSON at once, without redeliveries", async () => {
    const log = createLogger({ service: "canary-sink-test", level: "silent" });
    const bus = await connectBus({
      streams: "provision",
      servers: [testServices().natsUrl],
      name: "canary-sink-test",
      namespace: uniqueId("can"),
      log,
    });
    const canary = await startCanary({
      bus,
      // Nothing listens there: the sends fail, the sink is what is tested.
      settings: {
        pageId: "999000000000001",
        ingressUrl: "http://127.0.0.1:9/webhooks/facebook",
        appSecret: "s3cret",
        intervalMs: 60_000,
        timeoutMs: 500,
      },
      metrics: createCanaryMetrics(createMetricsRegistry("console")),
      log,
    });
    try {
      await publishRaw(bus.js, bus.topology.subjects.canaryEvent("999000000000001"), "<html>");
      const [letter, ...others] = await eventually(async () => {
        const stored = await listStored(bus.js, bus.jsm, bus.topology.streams.deadLetter.name);
        return stored.length > 0 ? stored : undefined;
      });
      expect(others).toEqual([]);
      expect(letter?.headers[Headers.stage]).toBe("canary-sink");
      expect(letter?.reason).toMatch(/^undecodable canary event: not JSON/);
      expect(letter?.headers[Headers.deliveries]).toBe("1");
    } finally {
      await canary.stop();
      await deleteStreams(bus.jsm, bus.topology);
      await bus.drain();
    }
  });
});
