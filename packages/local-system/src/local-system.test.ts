import pg from "pg";
import { describe, expect, inject, it } from "vitest";
import { createIsolatedDatabase, eventually, freePort, startServiceProcess } from "./index";

declare module "vitest" {
  export interface ProvidedContext {
    services: { databaseUrl: string; redisUrl: string; natsUrl: string; source: "local" | "testcontainers" };
  }
}

const adminUrl = () => inject("services").databaseUrl;

async function databaseExists(name: string) {
  const client = new pg.Client({ connectionString: adminUrl() });
  await client.connect();
  const { rowCount } = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
  await client.end();
  return rowCount === 1;
}

// A stand-in for a service: answers 200 on /readyz once it listens on PORT.
const server = `require("node:http").createServer((q, s) => { s.statusCode = q.url === "/readyz" ? 200 : 404; s.end(); }).listen(process.env.PORT); console.log("listening");`;

describe("createIsolatedDatabase", () => {
  it("creates a database of its own, migrates it, and drops it", async () => {
    const migrated: string[] = [];
    const database = await createIsolatedDatabase(adminUrl(), {
      prefix: "sb_ls_",
      migrate: async (url) => migrated.push(url),
    });
    expect(database.name).toMatch(/^sb_ls_[0-9a-f]{10}$/);
    expect(migrated).toEqual([database.url]);
    expect(await databaseExists(database.name)).toBe(true);
    await database.drop();
    expect(await databaseExists(database.name)).toBe(false);
  });

  it("drops the database when its migration fails", async () => {
    const name = `sb_ls_failed_${Date.now()}`;
    await expect(
      createIsolatedDatabase(adminUrl(), {
        name,
        migrate: async () => {
          throw new Error("bad migration");
        },
      }),
    ).rejects.toThrow("bad migration");
    expect(await databaseExists(name)).toBe(false);
  });
});

describe("startServiceProcess", () => {
  it("waits until the process answers on its ready path, and stops it", async () => {
    const port = await freePort();
    const service = await startServiceProcess("stand-in", { env: {}, port, script: ["-e", server] });
    expect((await fetch(`${service.url}/readyz`)).status).toBe(200);
    await eventually(() => service.output().includes("listening"));
    await service.stop();
    expect(service.process.signalCode).toBe("SIGTERM");
  });

  it("fails as soon as the process exits, with what it printed", async () => {
    // Longer than the test's own timeout: only failing at the exit lets the test pass.
    await expect(
      startServiceProcess("broken", {
        env: {},
        port: await freePort(),
        script: ["-e", 'console.error("DATABASE_URL is missing"); process.exit(3)'],
        readyTimeoutMs: 120_000,
      }),
    ).rejects.toThrow(/broken exited \(3\) before it was ready: .*DATABASE_URL is missing/s);
  });
});
