import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { type Bus, connectBus, deleteStreams } from "@switchboard/bus";
import { createTokenCipher, generateTokenKey } from "@switchboard/crypto";
import { applyMigrations, createDb, type Db } from "@switchboard/db";
import { createLogger } from "@switchboard/observability";
import { connectPage, PageOwnedByAnotherCompanyError, readPageToken } from "@switchboard/pages";
import { createTestDatabase, type TestDatabase, testServices, uniqueId } from "@switchboard/testing";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createCliContext } from "../context";
import { buildProgram } from "../program";

const keyK1 = generateTokenKey("k1");
const cipher = createTokenCipher(keyK1);
/** A row written before tokens were bound to their page (`v1`, AAD = key id only), as it was stored. */
const legacyKey = "legacy:S3mGTDB0yc3d44VxHsqSZT52tujIkuYZ9oV7nWNcCEo=";
const legacyToken = "v1.legacy.E0PHZIm8UjUtMbYF.QzCQzGwdxdNKd78VXFqqsA.tCs4qdqeTLX1SePOYwlcJXhlBC8";
const cliRoot = fileURLToPath(new URL("../..", import.meta.url));

describe("pnpm sb pages", () => {
  let database: TestDatabase;
  let db: Db;
  let bus: Bus;
  let environment: Record<string, string>;

  beforeAll(async () => {
    database = await createTestDatabase(applyMigrations);
    db = createDb(database.url);
    const namespace = uniqueId("cli");
    bus = await connectBus({
      streams: "provision",
      servers: [testServices().natsUrl],
      name: "cli-pages-test",
      namespace,
      log: createLogger({ service: "cli-test", level: "silent" }),
    });
    environment = {
      DATABASE_URL: database.url,
      NATS_URL: testServices().natsUrl,
      BUS_NAMESPACE: namespace,
      TOKEN_ENCRYPTION_KEYS: keyK1,
      LOG_LEVEL: "silent",
    };
  });

  afterAll(async () => {
    await deleteStreams(bus.jsm, bus.topology);
    await bus.drain();
    await db.$disconnect();
    await database.drop();
  });

  /** Runs `sb <args>` in-process; a failing command rejects (main.ts prints it and exits 1). */
  async function sb(args: string[], overrides: Record<string, string> = {}): Promise<string> {
    const context = createCliContext({ ...environment, ...overrides });
    let out = "";
    // These commands print with console.log, which vitest intercepts before process.stdout.
    const log = vi.spyOn(console, "log").mockImplementation((...values: unknown[]) => {
      out += `${values.join(" ")}\n`;
    });
    // Tables and JSON go straight to stdout.
    const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
      out += String(chunk);
      return true;
    });
    try {
      await buildProgram(context)
        .exitOverride()
        .parseAsync(["node", "sb", ...args]);
    } finally {
      log.mockRestore();
      write.mockRestore();
      await context.close();
    }
    return out;
  }

  /** `pages connect` with the token in a variable, as an operator runs it. */
  const connect = (pageId: string, name: string, company: string, token: string, extra: string[] = []) => {
    const tokenEnv = `SB_TEST_TOKEN_${uniqueId().replace(/\W/g, "_")}`;
    // The CLI reads --token-env from its context's environment, as it does from the operator's shell.
    return sb(
      [
        "pages",
        "connect",
        "--page-id",
        pageId,
        "--name",
        name,
        "--company",
        company,
        "--token-env",
        tokenEnv,
        ...extra,
      ],
      { [tokenEnv]: token },
    );
  };

  it("connect refuses a page another company owns, naming the page and leaving the owner's token; the owner can reconnect", async () => {
    expect(await connect("5001", "Shop", "acme", "EAAB-acme-1")).toBe(
      "connected page 5001 (Shop) for acme\n",
    );

    const taken = connect("5001", "Mine now", "rival", "EAAB-rival");
    await expect(taken).rejects.toThrow(PageOwnedByAnotherCompanyError);
    await expect(taken).rejects.toThrow(/^page 5001 belongs to another company/);
    await taken.catch((error: Error) => expect(error.message).not.toMatch(/EAAB|acme/));
    expect(await readPageToken(db, cipher, "5001")).toBe("EAAB-acme-1");
    expect(await db.pageConnection.findUniqueOrThrow({ where: { pageId: "5001" } })).toMatchObject({
      companyId: "acme",
      name: "Shop",
    });

    expect(await connect("5001", "Shop (renamed)", "acme", "EAAB-acme-2")).toBe(
      "updated token of page 5001 (Shop (renamed)) for acme\n",
    );
    expect(await readPageToken(db, cipher, "5001")).toBe("EAAB-acme-2");
  });

  it("the real command exits non-zero with the clear error when the page belongs to another company", async () => {
    await connectPage(
      { db, bus, cipher },
      { pageId: "5101", name: "Owned", companyId: "acme", token: "EAAB-5101" },
    );
    const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = execFile(
        `${cliRoot}/node_modules/.bin/tsx`,
        ["--conditions=@switchboard/source", "src/main.ts", "pages", "connect", "--page-id", "5101"].concat([
          "--name",
          "Taken",
          "--company",
          "rival",
          "--token-env",
          "SB_TEST_RIVAL_TOKEN",
        ]),
        { cwd: cliRoot, env: { ...process.env, ...environment, SB_TEST_RIVAL_TOKEN: "EAAB-rival" } },
        (_error, stdout, stderr) => resolve({ code: child.exitCode, stdout, stderr }),
      );
    });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("error: page 5101 belongs to another company");
    expect(run.stdout + run.stderr).not.toMatch(/EAAB|acme/);
    expect(await readPageToken(db, cipher, "5101")).toBe("EAAB-5101");
  }, 60_000);

  it("rotate-tokens re-encrypts every row, v1 ones included, bound to its page on the current key", async () => {
    await db.pageConnection.create({
      data: { pageId: "5201", companyId: "acme", name: "Legacy", pageAccessTokenEnc: legacyToken },
    });
    const before = await db.pageConnection.findMany({ orderBy: { pageId: "asc" } });
    const current = generateTokenKey("k2");
    const keys = `${current},${legacyKey},${keyK1}`;

    const out = await sb(["pages", "rotate-tokens"], { TOKEN_ENCRYPTION_KEYS: keys });
    expect(out).toBe(`re-encrypted ${before.length} token(s) with key k2; 0 already on it\n`);
    expect(await sb(["pages", "rotate-tokens"], { TOKEN_ENCRYPTION_KEYS: keys })).toBe(
      `re-encrypted 0 token(s) with key k2; ${before.length} already on it\n`,
    );

    // Only the current key is needed now, and every row is in the page-bound form.
    const currentOnly = createTokenCipher(current);
    const after = await db.pageConnection.findMany({ orderBy: { pageId: "asc" } });
    expect(after.every((row) => row.pageAccessTokenEnc.startsWith("v2.k2."))).toBe(true);
    expect(after.every((row) => currentOnly.isCurrent(row.pageAccessTokenEnc))).toBe(true);
    const tokens = Object.fromEntries(
      await Promise.all(
        after.map(async (row) => [row.pageId, await readPageToken(db, currentOnly, row.pageId)]),
      ),
    );
    expect(tokens).toEqual({ "5001": "EAAB-acme-2", "5101": "EAAB-5101", "5201": "EAAB-v1-legacy-token" });
  });

  it("connect --platform instagram stores an Instagram account with its token's expiry; list shows the platform; it cannot become a Page", async () => {
    expect(
      await connect("17841400000005001", "Shop IG", "acme", "IGAA-5001", [
        "--platform",
        "instagram",
        "--token-expires-at",
        "2027-01-31T00:00:00Z",
      ]),
    ).toBe("connected Instagram account 17841400000005001 (Shop IG) for acme\n");
    expect(
      await db.pageConnection.findUniqueOrThrow({ where: { pageId: "17841400000005001" } }),
    ).toMatchObject({
      platform: "instagram",
      tokenExpiresAt: new Date("2027-01-31T00:00:00Z"),
    });
    const listed = JSON.parse(await sb(["pages", "list", "--json"])) as Array<Record<string, unknown>>;
    expect(listed.find((r) => r.pageId === "17841400000005001")).toMatchObject({
      platform: "instagram",
      tokenExpires: "2027-01-31T00:00:00.000Z",
    });
    expect(listed.find((r) => r.pageId === "5001")).toMatchObject({ platform: "messenger" });
    const table = await sb(["pages", "list"]);
    expect(table).toMatch(/17841400000005001.*Shop IG.*instagram/);

    // An account cannot become a Page by reconnecting it without --platform.
    await expect(connect("17841400000005001", "Shop IG", "acme", "EAAB-x")).rejects.toThrow(
      /connected as a instagram account/,
    );
  });
});
