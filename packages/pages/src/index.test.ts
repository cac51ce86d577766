import { type Bus, connectBus, deleteStreams, listStored } from "@switchboard/bus";
import { PageLifecycleEvent } from "@switchboard/contracts";
import { createTokenCipher, generateTokenKey } from "@switchboard/crypto";
import { applyMigrations, createDb, type Db } from "@switchboard/db";
import { createLogger } from "@switchboard/observability";
import { createTestDatabase, type TestDatabase, testServices, uniqueId } from "@switchboard/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  connectPage,
  disconnectPage,
  listPages,
  readPageToken,
  rotatePageTokens,
  setPageStatus,
} from "./index";

const keyK1 = generateTokenKey("k1");
const cipher = createTokenCipher(keyK1);
const log = createLogger({ service: "pages-test", level: "silent" });

describe("page lifecycle", () => {
  let database: TestDatabase;
  let db: Db;
  let bus: Bus;

  beforeAll(async () => {
    database = await createTestDatabase(applyMigrations);
    db = createDb(database.url);
    bus = await connectBus({
      streams: "provision",
      servers: [testServices().natsUrl],
      name: "pages-test",
      namespace: uniqueId(),
      log,
    });
  });

  afterAll(async () => {
    await deleteStreams(bus.jsm, bus.topology);
    await bus.drain();
    await db.$disconnect();
    await database.drop();
  });

  const events = async () =>
    (await listStored(bus.js, bus.jsm, bus.topology.streams.pages.name)).map((m) =>
      PageLifecycleEvent.parse(JSON.parse(new TextDecoder().decode(m.data))),
    );

  it("connects, rotates the token, disconnects and changes status, announcing each without the token", async () => {
    const deps = { db, bus, cipher };
    const first = await connectPage(deps, {
      pageId: "1001",
      name: "Shop",
      companyId: "acme",
      token: "EAAB-first",
    });
    expect(first.event).toBe("page.connected");
    expect(first.page.pageAccessTokenEnc).not.toContain("EAAB");
    expect(await readPageToken(db, cipher, "1001")).toBe("EAAB-first");

    const second = await connectPage(deps, {
      pageId: "1001",
      name: "Shop",
      companyId: "acme",
      token: "EAAB-second",
    });
    expect(second.event).toBe("page.token_updated");
    expect(await readPageToken(db, cipher, "1001")).toBe("EAAB-second");

    await expect(
      connectPage(deps, { pageId: "1001", name: "Shop", companyId: "other", token: "x" }),
    ).rejects.toThrow(/another company/);

    expect(await setPageStatus(deps, "1001", "reauthorization_required", "token revoked")).toBe(true);
    expect(await setPageStatus(deps, "1001", "reauthorization_required", "token revoked")).toBe(false);
    await disconnectPage(deps, "1001");

    const published = await events();
    expect(published.map((e) => e.type)).toEqual([
      "page.connected",
      "page.token_updated",
      "page.status_changed",
      "page.disconnected",
    ]);
    expect(published[2]).toMatchObject({ status: "reauthorization_required", reason: "token revoked" });
    const raw = (await listStored(bus.js, bus.jsm, bus.topology.streams.pages.name))
      .map((m) => new TextDecoder().decode(m.data))
      .join("");
    expect(raw).not.toContain("EAAB");

    const [page] = await listPages(db, cipher);
    expect(page).toMatchObject({ pageId: "1001", status: "disabled", tokenKeyId: "k1" });
  });

  it("re-encrypts tokens still on an old key with the current one", async () => {
    const oldKey = generateTokenKey("old");
    const oldCipher = createTokenCipher(oldKey);
    await connectPage(
      { db, bus, cipher: oldCipher },
      { pageId: "1002", name: "Old", companyId: "acme", token: "EAAB-old" },
    );
    const newKey = generateTokenKey("new");
    const rotatedCipher = createTokenCipher(`${newKey},${oldKey},${keyK1}`);
    expect(await rotatePageTokens(db, rotatedCipher)).toEqual({ rotated: 2, current: 0 });
    expect(await rotatePageTokens(db, rotatedCipher)).toEqual({ rotated: 0, current: 2 });
    // The old keys can now be removed.
    const newOnly = createTokenCipher(newKey);
    expect(await readPageToken(db, newOnly, "1002")).toBe("EAAB-old");
    expect(await readPageToken(db, newOnly, "1001")).toBe("EAAB-second");
    expect((await listPages(db, rotatedCipher)).map((p) => p.tokenKeyId)).toEqual(["new", "new"]);
  });
});
