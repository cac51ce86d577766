import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { resolveEveryNameTo } from "./dns-double";
import { postDelivery } from "./http-delivery";

const allowPrivate = { allowPrivateTargets: true };
const strict = { allowPrivateTargets: false };

interface Received {
  method: string | undefined;
  url: string | undefined;
  headers: http.IncomingHttpHeaders;
  body: string;
}

const servers: http.Server[] = [];

/** A real receiver on 127.0.0.1 that records every request it gets. */
async function receiver(answer: (req: IncomingMessage, res: ServerResponse) => void) {
  const received: Received[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      received.push({
        method: req.method,
        url: req.url,
        headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
      });
      answer(req, res);
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, port, received };
}

afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(
    servers.splice(0).map(
      (server) =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    ),
  );
});

const delivery = (url: string, overrides: Partial<Parameters<typeof postDelivery>[0]> = {}) =>
  postDelivery({
    url,
    headers: { "webhook-id": "msg_1", "webhook-signature": "v1,c2VjcmV0LXNpZ25hdHVyZQ==" },
    body: '{"type":"message.received"}',
    timeoutMs: 5000,
    policy: allowPrivate,
    ...overrides,
  });

describe("postDelivery", () => {
  it("posts the signed JSON body and reports a 2xx as delivered", async () => {
    const target = await receiver((_req, res) => res.writeHead(200).end("thanks"));
    const outcome = await delivery(`${target.url}/hooks`);

    expect(outcome).toMatchObject({ ok: true, statusCode: 200, error: null, responseSnippet: "thanks" });
    expect(outcome.durationMs).toBeGreaterThanOrEqual(0);
    expect(target.received).toHaveLength(1);
    const [request] = target.received;
    expect(request).toMatchObject({ method: "POST", url: "/hooks", body: '{"type":"message.received"}' });
    expect(request!.headers).toMatchObject({
      "content-type": "application/json",
      "user-agent": "Switchboard-Webhooks/1",
      "content-length": String('{"type":"message.received"}'.length),
      "webhook-id": "msg_1",
      "webhook-signature": "v1,c2VjcmV0LXNpZ25hdHVyZQ==",
    });
  });

  it("reports a 500 as not delivered, with the body's start", async () => {
    const target = await receiver((_req, res) => res.writeHead(500).end("boom"));
    const outcome = await delivery(target.url);
    expect(outcome).toMatchObject({ ok: false, statusCode: 500, error: "HTTP 500", responseSnippet: "boom" });
  });

  it("does not follow a redirect", async () => {
    const elsewhere = await receiver((_req, res) => res.writeHead(200).end());
    const target = await receiver((_req, res) =>
      res.writeHead(302, { location: `${elsewhere.url}/internal` }).end(),
    );
    const outcome = await delivery(target.url);

    expect(outcome).toMatchObject({
      ok: false,
      statusCode: 302,
      error: `redirect to ${elsewhere.url}/internal not followed`,
    });
    expect(target.received).toHaveLength(1);
    expect(elsewhere.received).toHaveLength(0);
  });

  it("gives up on a receiver that never answers once timeoutMs has passed", async () => {
    const target = await receiver(() => {});
    const outcome = await delivery(target.url, { timeoutMs: 200 });

    expect(outcome).toMatchObject({
      ok: false,
      statusCode: null,
      error: "timed out after 200 ms",
      responseSnippet: null,
    });
    expect(outcome.durationMs).toBeGreaterThanOrEqual(150);
    expect(outcome.durationMs).toBeLessThan(5000);
  });

  it("bounds the body too: a response that starts but never ends times out", async () => {
    const target = await receiver((_req, res) => {
      res.writeHead(200);
      res.write("partial");
    });
    const outcome = await delivery(target.url, { timeoutMs: 200 });
    expect(outcome).toMatchObject({ ok: false, statusCode: null, error: "timed out after 200 ms" });
  });

  it("reads only maxResponseBytes of a 1 MB body", async () => {
    const target = await receiver((_req, res) => res.writeHead(200).end("x".repeat(1024 * 1024)));
    const outcome = await delivery(target.url, { maxResponseBytes: 1000 });
    expect(outcome.ok).toBe(true);
    expect(outcome.responseSnippet!.length).toBeLessThanOrEqual(1000);
    expect(outcome.responseSnippet).toBe("x".repeat(1000));

    const byDefault = await delivery(target.url);
    expect(byDefault.responseSnippet).toBe("x".repeat(4096));
  });

  it("stops reading an endless body once it has maxResponseBytes", async () => {
    const target = await receiver((_req, res) => {
      res.writeHead(200);
      const chunk = "y".repeat(16 * 1024);
      const pump = () => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once("drain", pump);
      };
      pump();
    });
    // Waiting for the end would hit the timeout (ok=false); stopping early answers ok.
    const outcome = await delivery(target.url, { timeoutMs: 10_000, maxResponseBytes: 512 });
    expect(outcome).toMatchObject({
      ok: true,
      statusCode: 200,
      error: null,
      responseSnippet: "y".repeat(512),
    });
  });

  it("refuses private targets unless allowed, without contacting them", async () => {
    const target = await receiver((_req, res) => res.writeHead(200).end());

    const overHttp = await delivery(target.url, { policy: strict });
    expect(overHttp).toMatchObject({ ok: false, statusCode: null, responseSnippet: null });
    expect(overHttp.error).toMatch(/^refused: http:\/\/ targets are not allowed/);

    const loopback = await delivery(`https://127.0.0.1:${target.port}/`, { policy: strict });
    expect(loopback.error).toBe("refused: 127.0.0.1 is a loopback/private address (loopback)");

    const localhost = await delivery(`https://localhost:${target.port}/`, { policy: strict });
    expect(localhost.error).toBe("refused: localhost is a loopback host name");

    expect(target.received).toHaveLength(0);
  });

  it("refuses a host name that resolves to a private address, at connect time", async () => {
    const target = await receiver((_req, res) => res.writeHead(200).end());
    // The name passes checkTargetUrl; only the resolved address gives it away (DNS rebinding).
    const lookup = resolveEveryNameTo([{ address: "127.0.0.1", family: 4 }]);

    const outcome = await delivery(`https://hooks.example.com:${target.port}/`, { policy: strict });
    expect(lookup).toHaveBeenCalled();
    expect(outcome).toMatchObject({
      ok: false,
      statusCode: null,
      error: "refused: hooks.example.com resolves to 127.0.0.1 is a loopback/private address (loopback)",
    });
    expect(target.received).toHaveLength(0);
  });

  it("reports a closed port as connection refused", async () => {
    const closed = await receiver(() => {});
    await new Promise<void>((resolve) => servers.pop()!.close(() => resolve()));
    const outcome = await delivery(closed.url);
    expect(outcome).toMatchObject({ ok: false, statusCode: null, error: "connection refused" });
  });

  it("never puts header values in an error", async () => {
    const target = await receiver((_req, res) => res.writeHead(503).end());
    const outcomes = [
      await delivery(target.url),
      await delivery(target.url, { policy: strict }),
      await delivery(`http://127.0.0.1:1/`),
    ];
    for (const outcome of outcomes) {
      expect(outcome.ok).toBe(false);
      expect(outcome.error).not.toContain("c2VjcmV0");
      expect(outcome.error).not.toContain("msg_1");
    }
  });
});
