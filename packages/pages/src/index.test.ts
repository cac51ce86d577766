import { type Bus, connectBus, deleteStreams, listStored } from "@switchboard/bus";
import { PageLifecycleEvent } from "@switchboard/contracts";
import { createTokenCipher, generateTokenKey, TokenDecryptionError } from "@switchboard/crypto";
import { applyMigrations, createDb, type Db } from "@switchboard/db";
import { createLogger } from "@switchboard/observability";
import { createTestDatabase, type TestDatabase, testServices, uniqueId } from "@switchboard/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  connectPage,
  disconnectPage,
  listPages,
  PageOwnedByAnotherCompanyError,
  PagePlatformMismatchError,
  readPageToken,
  replaceRefreshedToken,
  rotatePageTokens,
  setPageStatus,
} from "./index";

const keyK1 = generateTokenKey("k1");
const cipher = createTokenCipher(keyK1);
const log = createLogger({ service: "pages-test", level: "silent" });

/** A row written before tokens were bound to their page (`v1`, AAD = key id only), as it was stored. */
const legacyKey = "legacy:S3mGTDB0yc3d44VxHsqSZT52tujIkuYZ9oV7nWNcCEo=";
const legacyToken = "v1.legacy.E0PHZIm8UjUtMbYF.QzCQzGwdxdNKd78VXFqqsA.tCs4qdqeTLX1SePOYwlcJXhlBC8";

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
    ).rejects.toThrow(/page 1001 belongs to another company/);

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

  it("binds each stored token to its page: a ciphertext copied into another page's row does not decrypt", async () => {
    const deps = { db, bus, cipher };
    const a = await connectPage(deps, { pageId: "1101", name: "A", companyId: "acme", token: "EAAB-a" });
    await connectPage(deps, { pageId: "1102", name: "B", companyId: "acme", token: "EAAB-b" });
    await db.pageConnection.update({
      where: { pageId: "1102" },
      data: { pageAccessTokenEnc: a.page.pageAccessTokenEnc },
    });
    await expect(readPageToken(db, cipher, "1102")).rejects.toThrow(TokenDecryptionError);
    expect(await readPageToken(db, cipher, "1101")).toBe("EAAB-a");
  });

  it("reads a v1 token stored before page binding, and rotation rewrites every row page-bound on the current key", async () => {
    // Only this test's rows, so every key the rotation meets is known here.
    await db.pageConnection.deleteMany();
    await db.pageConnection.create({
      data: { pageId: "1201", companyId: "acme", name: "Legacy", pageAccessTokenEnc: legacyToken },
    });
    await connectPage(
      { db, bus, cipher },
      { pageId: "1202", name: "K1", companyId: "acme", token: "EAAB-k1" },
    );
    // 1201 is already on the current key but not bound to its page: rotation must still rewrite it.
    const current = createTokenCipher(`${legacyKey},${keyK1}`);
    expect(await readPageToken(db, current, "1201")).toBe("EAAB-v1-legacy-token");
    expect(await rotatePageTokens(db, current)).toEqual({ rotated: 2, current: 0 });
    expect(await rotatePageTokens(db, current)).toEqual({ rotated: 0, current: 2 });
    const rows = await db.pageConnection.findMany({ orderBy: { pageId: "asc" } });
    expect(rows.map((r) => r.pageAccessTokenEnc.split(".").slice(0, 2).join("."))).toEqual([
      "v2.legacy",
      "v2.legacy",
    ]);
    const legacyOnly = createTokenCipher(legacyKey);
    expect(await readPageToken(db, legacyOnly, "1201")).toBe("EAAB-v1-legacy-token");
    expect(await readPageToken(db, legacyOnly, "1202")).toBe("EAAB-k1");
  });

  it("never lets another company take over a connected page; the owner can still reconnect", async () => {
    const deps = { db, bus, cipher };
    await connectPage(deps, { pageId: "1301", name: "Owned", companyId: "acme", token: "EAAB-owner" });
    const attempt = connectPage(deps, {
      pageId: "1301",
      name: "Taken",
      companyId: "rival",
      token: "EAAB-rival",
    });
    await expect(attempt).rejects.toThrow(PageOwnedByAnotherCompanyError);
    await expect(attempt).rejects.toThrow(/page 1301 belongs to another company/);
    await attempt.catch((error: Error) => {
      expect(error.message).not.toMatch(/EAAB|acme/);
    });
    expect(await readPageToken(db, cipher, "1301")).toBe("EAAB-owner");
    expect(await db.pageConnection.findUniqueOrThrow({ where: { pageId: "1301" } })).toMatchObject({
      companyId: "acme",
      name: "Owned",
    });

    await disconnectPage(deps, "1301");
    const again = await connectPage(deps, {
      pageId: "1301",
      name: "Owned again",
      companyId: "acme",
      token: "EAAB-owner-2",
    });
    expect(again).toMatchObject({
      event: "page.connected",
      page: { pageId: "1301", companyId: "acme", name: "Owned again", status: "active", statusReason: null },
    });
    expect(again.page.updatedAt).toBeInstanceOf(Date);
    expect(await readPageToken(db, cipher, "1301")).toBe("EAAB-owner-2");
    const updated = await connectPage(deps, {
      pageId: "1301",
      name: "Owned again",
      companyId: "acme",
      token: "EAAB-owner-3",
    });
    expect(updated.event).toBe("page.token_updated");
    expect(await readPageToken(db, cipher, "1301")).toBe("EAAB-owner-3");
  });

  it("two companies connecting the same new page at once: exactly one wins and keeps its token", async () => {
    const deps = { db, bus, cipher };
    for (let i = 0; i < 10; i++) {
      const pageId = `14${String(i).padStart(2, "0")}`;
      const results = await Promise.allSettled(
        ["acme", "rival"].map((companyId) =>
          connectPage(deps, { pageId, name: companyId, companyId, token: `EAAB-${companyId}-${pageId}` }),
        ),
      );
      const won = results.filter((r) => r.status === "fulfilled");
      const lost = results.filter((r) => r.status === "rejected");
      expect(won).toHaveLength(1);
      expect(lost).toHaveLength(1);
      expect(lost[0]!.reason).toBeInstanceOf(PageOwnedByAnotherCompanyError);
      const winner = won[0]!.value.page.companyId;
      const stored = await db.pageConnection.findUniqueOrThrow({ where: { pageId } });
      expect(stored).toMatchObject({ companyId: winner, name: winner });
      expect(await readPageToken(db, cipher, pageId)).toBe(`EAAB-${winner}-${pageId}`);
    }
  });

  it("connects an Instagram account as its platform, refuses to turn it into a Page, and lists both", async () => {
    const deps = { db, bus, cipher };
    const expires = new Date(Date.now() + 50 * 86_400_000);
    const { page } = await connectPage(deps, {
      pageId: "17841400000000001",
      name: "Shop IG",
      companyId: "acme",
      token: "IGAAtoken",
      platform: "instagram",
      tokenExpiresAt: expires,
    });
    expect(page.platform).toBe("instagram");
    expect(page.tokenExpiresAt?.getTime()).toBe(expires.getTime());
    expect(page.tokenObtainedAt).toBeInstanceOf(Date);
    const announced = (await events()).filter((e) => e.pageId === "17841400000000001");
    expect(announced.map((e) => [e.type, e.platform])).toEqual([["page.connected", "instagram"]]);

    await expect(
      connectPage(deps, { pageId: "17841400000000001", name: "x", companyId: "acme", token: "EAAx" }),
    ).rejects.toBeInstanceOf(PagePlatformMismatchError);
    expect(await readPageToken(db, cipher, "17841400000000001")).toBe("IGAAtoken");
    // Another company still hears only that the account is taken.
    await expect(
      connectPage(deps, {
        pageId: "17841400000000001",
        name: "x",
        companyId: "evil",
        token: "t",
        platform: "instagram",
      }),
    ).rejects.toBeInstanceOf(PageOwnedByAnotherCompanyError);

    await connectPage(deps, { pageId: "2002", name: "FB shop", companyId: "acme", token: "EAAfb" });
    const listed = await listPages(db);
    expect(listed.find((p) => p.pageId === "17841400000000001")).toMatchObject({
      platform: "instagram",
      tokenExpiresAt: expires,
    });
    expect(listed.find((p) => p.pageId === "2002")).toMatchObject({
      platform: "messenger",
      tokenExpiresAt: null,
    });
  });

  it("stores a refreshed token only over the ciphertext it replaced, and announces it without the token", async () => {
    const deps = { db, bus, cipher };
    const { page } = await connectPage(deps, {
      pageId: "17841400000000002",
      name: "IG 2",
      companyId: "acme",
      token: "IGAAold",
      platform: "instagram",
    });
    const expiresAt = new Date(Date.now() + 60 * 86_400_000);
    expect(
      await replaceRefreshedToken(deps, {
        pageId: page.pageId,
        previousTokenEnc: page.pageAccessTokenEnc,
        token: "IGAAnew",
        expiresAt,
      }),
    ).toBe(true);
    expect(await readPageToken(db, cipher, page.pageId)).toBe("IGAAnew");
    const row = await db.pageConnection.findUniqueOrThrow({ where: { pageId: page.pageId } });
    expect(row.tokenExpiresAt?.getTime()).toBe(expiresAt.getTime());
    expect(row.tokenRefreshedAt).toBeInstanceOf(Date);
    const last = (await events()).filter((e) => e.pageId === page.pageId).at(-1);
    expect(last).toMatchObject({
      type: "page.token_updated",
      reason: "token refreshed",
      platform: "instagram",
    });
    expect(JSON.stringify(await events())).not.toContain("IGAAnew");

    // An operator reconnected with another token meanwhile: the refresh of the old one does not win.
    await connectPage(deps, {
      ...{ pageId: page.pageId, name: "IG 2", companyId: "acme" },
      token: "IGAAoperator",
      platform: "instagram",
    });
    expect(
      await replaceRefreshedToken(deps, {
        pageId: page.pageId,
        previousTokenEnc: row.pageAccessTokenEnc,
        token: "IGAAstale",
        expiresAt,
      }),
    ).toBe(false);
    expect(await readPageToken(db, cipher, page.pageId)).toBe("IGAAoperator");
  });
});
