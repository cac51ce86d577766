import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

async function deadPort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

describe("ingress start-up", () => {
  it("without NATS, names it and its URL in one line, with how to start it, and exits 1", async () => {
    const url = `nats://127.0.0.1:${await deadPort()}`;
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        "--conditions=@switchboard/source",
        fileURLToPath(new URL("./main.ts", import.meta.url)),
      ],
      {
        env: {
          PATH: process.env.PATH,
          NATS_URL: url,
          FB_APP_SECRET: "test-app-secret",
          FB_VERIFY_TOKEN: "test-verify-token",
          PORT: "0",
          LOG_LEVEL: "silent",
        },
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    let stderr = "";
    child.stderr.on("data", (chunk) => {
      stderr += String(chunk);
    });
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(code).toBe(1);
    expect(stderr).toBe(
      `start-up failed: cannot reach NATS at ${url} (connection refused) — start it with \`docker compose -f infra/compose.yaml up -d nats\` or install nats-server\n`,
    );
  }, 20_000);
});
