/** Test-only (not exported): the ingress the fake's webhooks reach in this package's tests. */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface Received {
  raw: string;
  headers: IncomingMessage["headers"];
  answeredAtArrival: boolean;
}

/** A stand-in for the ingress: records raw bodies; can hold its answers until released. */
export function createReceiver() {
  const received: Received[] = [];
  let held: Array<() => void> | undefined;
  const state = { answered: false };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      received.push({
        raw: Buffer.concat(chunks).toString("utf8"),
        headers: req.headers,
        answeredAtArrival: state.answered,
      });
      const answer = () => res.writeHead(200).end("EVENT_RECEIVED");
      if (held) held.push(answer);
      else answer();
    });
  });
  return {
    received,
    state,
    hold() {
      held = [];
    },
    release() {
      for (const answer of held ?? []) answer();
      held = undefined;
    },
    async start(): Promise<string> {
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}/webhooks/facebook`;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
