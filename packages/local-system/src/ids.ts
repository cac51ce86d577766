import { randomBytes } from "node:crypto";
import { createServer } from "node:net";

/** A short random id: each run gets its own bus namespace, key prefix and database. */
export function uniqueId(prefix = "t"): string {
  return `${prefix}${randomBytes(5).toString("hex")}`;
}

/** A port nothing listens on right now (the OS picks it), for a process to listen on next. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
