import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { waitForLocalServices } from "./local-services.js";

const local = {
  databaseUrl: process.env.DATABASE_URL || "postgresql://postgres@127.0.0.1:5432/postgres",
  redisUrl: process.env.REDIS_URL || "redis://127.0.0.1:6379",
  natsUrl: process.env.NATS_URL || "nats://127.0.0.1:4222",
};
const natsServer = ["/usr/sbin/nats-server", "/usr/local/bin/nats-server", "/usr/bin/nats-server"].find(
  existsSync,
);

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

const cleanups = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

describe("waitForLocalServices", () => {
  it("returns at once when the machine's Postgres, Redis and NATS (JetStream) answer", async () => {
    const waits = [];
    await waitForLocalServices(local, { timeoutMs: 10_000, onWait: (w) => waits.push(w) });
    expect(waits).toEqual([]);
  });

  it.skipIf(!natsServer)(
    "waits for a NATS that starts late (as on a machine that has just booted)",
    async () => {
      const port = await freePort();
      const dir = mkdtempSync(join(tmpdir(), "late-nats-"));
      let child;
      const timer = setTimeout(() => {
        child = spawn(natsServer, ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir], {
          stdio: "ignore",
        });
      }, 1500);
      cleanups.push(async () => {
        clearTimeout(timer);
        child?.kill("SIGKILL");
        rmSync(dir, { recursive: true, force: true });
      });
      const waits = [];
      await waitForLocalServices(
        { ...local, natsUrl: `nats://127.0.0.1:${port}` },
        { timeoutMs: 30_000, pauseMs: 200, onWait: (w) => waits.push(w) },
      );
      expect(waits.length).toBeGreaterThan(0);
      expect(waits.every((w) => w.length === 1 && w[0] === "nats")).toBe(true);
    },
  );

  it.skipIf(!natsServer)("refuses a NATS without JetStream, saying so", async () => {
    const port = await freePort();
    const child = spawn(natsServer, ["-a", "127.0.0.1", "-p", String(port)], { stdio: "ignore" });
    cleanups.push(async () => child.kill("SIGKILL"));
    const error = await waitForLocalServices(
      { ...local, natsUrl: `nats://127.0.0.1:${port}` },
      { timeoutMs: 2000, pauseMs: 200 },
    ).catch((e) => e);
    expect(error).toBeInstanceOf(Error);
    expect(error.message).toMatch(/nats at nats:\/\/127\.0\.0\.1:\d+ \(JetStream is not enabled/);
  });

  it("gives up at the deadline naming each service that never answered and where it looked", async () => {
    const [pgPort, redisPort] = [await freePort(), await freePort()];
    const error = await waitForLocalServices(
      {
        ...local,
        databaseUrl: `postgresql://postgres@127.0.0.1:${pgPort}/x`,
        redisUrl: `redis://127.0.0.1:${redisPort}`,
      },
      { timeoutMs: 600, pauseMs: 100 },
    ).catch((e) => e);
    expect(error).toBeInstanceOf(Error);
    expect(error.message).toContain(`postgres at postgresql://postgres@127.0.0.1:${pgPort}/x`);
    expect(error.message).toContain(`redis at redis://127.0.0.1:${redisPort}`);
    expect(error.message).not.toContain("nats at");
    expect(error.message).toMatch(/ECONNREFUSED/);
  });
});
