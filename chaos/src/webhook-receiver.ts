import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";

/** One delivery the product's endpoint answered 2xx, as the product would have processed it. */
export interface AcceptedDelivery {
  webhookId: string;
  type: string;
  data: { mid?: string; conversationId?: string; direction?: string };
}

/**
 * The product's endpoint on the bed: a real HTTP server that verifies every delivery with the
 * `standardwebhooks` package, answers slowly (so a dispatcher killed mid-delivery has attempts in flight)
 * and now and then with a 503 (so deliveries are retried), and keeps, in order, what it accepted.
 */
export async function startWebhookReceiver({
  answerAfterMs = 50,
  failEvery = 10,
}: {
  answerAfterMs?: number;
  /** Every n-th request is answered 503 (0: never). */
  failEvery?: number;
} = {}) {
  let verifier: Webhook | undefined;
  const accepted: AcceptedDelivery[] = [];
  let requests = 0;
  let badSignatures = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      requests++;
      const body = Buffer.concat(chunks).toString("utf8");
      let payload: { type: string; data: AcceptedDelivery["data"] };
      try {
        if (!verifier) throw new Error("no secret yet");
        payload = verifier.verify(body, {
          "webhook-id": String(req.headers["webhook-id"]),
          "webhook-timestamp": String(req.headers["webhook-timestamp"]),
          "webhook-signature": String(req.headers["webhook-signature"]),
        }) as typeof payload;
      } catch {
        badSignatures++;
        res.writeHead(401).end();
        return;
      }
      const fail = failEvery > 0 && requests % failEvery === 0;
      setTimeout(() => {
        if (fail) {
          res.writeHead(503).end();
          return;
        }
        // Counted when the answer leaves: a dispatcher killed before it reads it delivers again.
        accepted.push({
          webhookId: String(req.headers["webhook-id"]),
          type: payload.type,
          data: payload.data,
        });
        res.writeHead(204).end();
      }, answerAfterMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/switchboard-events`,
    /** The endpoint's secret, as `POST /v1/webhook-endpoints` answered it. */
    useSecret(secret: string) {
      verifier = new Webhook(secret);
    },
    accepted,
    badSignatures: () => badSignatures,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
export type WebhookReceiver = Awaited<ReturnType<typeof startWebhookReceiver>>;
