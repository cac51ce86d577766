import { createServer, request as httpRequest, type IncomingHttpHeaders } from "node:http";

export interface Balancer {
  url: string;
  close(): Promise<void>;
}

/**
 * What a Kubernetes Service does in front of the ingress replicas: each request goes to the next replica,
 * and a replica that refuses the connection (killed, restarting) is skipped. A request a replica accepted
 * and then lost is answered 502, as a real load balancer would: the sender (Meta) retries.
 */
export async function startBalancer(targets: () => string[]): Promise<Balancer> {
  let next = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const candidates = targets();
      const order = candidates.map((_, i) => candidates[(next + i) % candidates.length]!);
      next = (next + 1) % Math.max(1, candidates.length);
      const attempt = (i: number) => {
        const target = order[i];
        if (!target) {
          res.writeHead(502).end("no replica answered");
          return;
        }
        const url = new URL(req.url ?? "/", target);
        const headers: IncomingHttpHeaders = { ...req.headers, host: url.host };
        const upstream = httpRequest(url, { method: req.method, headers, agent: false }, (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        });
        upstream.on("error", (error: NodeJS.ErrnoException) => {
          if (res.headersSent) return res.destroy();
          // Never reached the replica: the next one may take it.
          if (error.code === "ECONNREFUSED") return attempt(i + 1);
          res.writeHead(502).end(`replica failed: ${error.message}`);
        });
        upstream.end(body);
      };
      attempt(0);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
