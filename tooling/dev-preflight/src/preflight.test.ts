import { type ChildProcess, spawn } from "node:child_process";
import { createServer, connect as tcpConnect } from "node:net";
import { fileURLToPath } from "node:url";
import { eventually, testServices } from "@switchboard/testing";
import { describe, expect, it } from "vitest";
import { checkDependencies, preflightReport } from "./preflight";

/** A port on which nothing listens (taken, then released). */
async function deadPort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function deadEnvironment() {
  return {
    DATABASE_URL: `postgresql://postgres@127.0.0.1:${await deadPort()}/switchboard`,
    REDIS_URL: `redis://127.0.0.1:${await deadPort()}`,
    NATS_URL: `nats://127.0.0.1:${await deadPort()}`,
  };
}

describe("dev preflight", () => {
  it("passes against the running PostgreSQL, Redis and NATS with JetStream", async () => {
    const { databaseUrl, redisUrl, natsUrl } = testServices();
    const results = await checkDependencies({
      DATABASE_URL: databaseUrl,
      REDIS_URL: redisUrl,
      NATS_URL: natsUrl,
    });
    expect(results.map((r) => [r.name, r.ok])).toEqual([
      ["postgres", true],
      ["redis", true],
      ["nats", true],
    ]);
  });

  it("names each service missing, with the URL tried and how to start it, within seconds", async () => {
    const environment = await deadEnvironment();
    const started = Date.now();
    const results = await checkDependencies(environment);
    expect(Date.now() - started).toBeLessThan(3500);
    expect(results.map((r) => [r.name, r.url, r.ok, r.problem])).toEqual([
      ["postgres", environment.DATABASE_URL, false, "connection refused"],
      ["redis", environment.REDIS_URL, false, "connection refused"],
      ["nats", environment.NATS_URL, false, "connection refused"],
    ]);
    const report = preflightReport(results);
    expect(report).toContain(
      `✗ NATS at ${environment.NATS_URL} (NATS_URL): connection refused — start it with \`docker compose -f infra/compose.yaml up -d nats\` or install nats-server`,
    );
    expect(report).toContain(`✗ Redis at ${environment.REDIS_URL} (REDIS_URL): connection refused`);
    expect(report).toContain("up -d postgres` or install postgresql");
  });

  it("says so when NATS runs without JetStream", async () => {
    const port = await deadPort();
    const nats: ChildProcess = spawn("nats-server", ["-a", "127.0.0.1", "-p", String(port)], {
      stdio: "ignore",
    });
    try {
      await eventually(
        () =>
          new Promise<boolean>((resolve) => {
            const socket = tcpConnect(port, "127.0.0.1");
            socket.on("connect", () => resolve(socket.end() !== undefined));
            socket.on("error", () => resolve(false));
          }),
        { message: "nats-server to listen" },
      );
      const { databaseUrl, redisUrl } = testServices();
      const results = await checkDependencies({
        DATABASE_URL: databaseUrl,
        REDIS_URL: redisUrl,
        NATS_URL: `nats://127.0.0.1:${port}`,
      });
      const natsResult = results.find((r) => r.name === "nats")!;
      expect(natsResult).toMatchObject({
        ok: false,
        problem: expect.stringMatching(/^JetStream is not enabled/),
      });
      expect(natsResult.fix).toMatch(/-js/);
    } finally {
      nats.kill("SIGKILL");
    }
  });

  it("as `pnpm dev` runs it: exits 1 within seconds and prints what is missing", async () => {
    const environment = await deadEnvironment();
    const started = Date.now();
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        "--conditions=@switchboard/source",
        fileURLToPath(new URL("./main.ts", import.meta.url)),
      ],
      { env: { PATH: process.env.PATH, ...environment }, stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    child.stderr!.on("data", (chunk) => {
      stderr += String(chunk);
    });
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(code).toBe(1);
    expect(Date.now() - started).toBeLessThan(8000);
    expect(stderr).toMatch(/^dev preflight: dependencies are not reachable, nothing was started:\n/);
    for (const url of Object.values(environment)) expect(stderr).toContain(url);
  }, 20_000);
});
