import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eventually } from "@switchboard/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFakeMeta, fakeMetaControl } from "./index";
import { FakeMetaState } from "./state";
import { loadStateFile, persistState, StateFileError } from "./state-file";

let dir: string;
let file: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "fake-meta-state-"));
  file = join(dir, ".data", "fake-meta.json");
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A world worth keeping: a subscribed page with a replaced token, a revoked page, people on both. */
function register(state: FakeMetaState) {
  state.addPage({ pageId: "111", token: "old-111", name: "Shop" });
  state.setToken("111", "new-111");
  state.subscribe("111", ["messages", "message_echoes"]);
  state.addPage({ pageId: "222", token: "t-222" });
  state.revokeToken("222");
  state.addUser({ pageId: "111", psid: "900", firstName: "Ada", lastName: "Lovelace" });
  state.addUser({ pageId: "222", psid: "901" });
}

describe("FAKE_META_STATE_FILE", () => {
  it("saves the registrations and a new fake Meta loads them back (round trip)", () => {
    const before = new FakeMetaState();
    const saving = persistState(before, file);
    register(before);
    before.injectError("111", { code: 613 });
    saving.close();

    const after = new FakeMetaState();
    persistState(after, file).close();
    expect(after.registrations()).toEqual(before.registrations());
    expect(after.page("111")).toMatchObject({
      token: "new-111",
      subscribedFields: ["messages", "message_echoes"],
    });
    expect(after.tokenInfo("old-111")).toEqual({ pageId: "111", status: "replaced" });
    expect(after.tokenInfo("t-222")).toEqual({ pageId: "222", status: "revoked" });
    expect(after.user("900")).toMatchObject({ pageId: "111", firstName: "Ada" });
    // A session's injected faults are not registrations.
    expect(after.takeInjectedError("111", "messages", "POST")).toBeUndefined();
  });

  it("writes once per burst of changes, through a temporary file and a rename", async () => {
    const state = new FakeMetaState();
    persistState(state, file, { debounceMs: 50 });
    for (let i = 0; i < 200; i++) state.addUser({ pageId: "111", psid: String(1000 + i) });
    expect(existsSync(file)).toBe(false);
    await eventually(() => existsSync(file));
    expect(loadStateFile(file)!.users).toHaveLength(200);
    expect(readdirSync(join(dir, ".data"))).toEqual(["fake-meta.json"]);
  });

  it("/_fake/reset empties the saved state too", async () => {
    const fake = createFakeMeta({
      appSecret: "s3cret-app",
      appId: "1",
      ingressUrl: "http://127.0.0.1:9",
      stateFile: file,
    });
    const server = await fake.listen();
    try {
      const control = fakeMetaControl(server.url, fake.controlToken);
      expect((await control("/pages", { pageId: "111", token: "t-111" })).status).toBe(201);
      fake.flushState();
      expect(loadStateFile(file)!.pages.map((p) => p.pageId)).toEqual(["111"]);
      expect((await control("/reset", {})).status).toBe(200);
      fake.flushState();
      expect(loadStateFile(file)).toEqual({ pages: [], tokens: [], users: [] });
    } finally {
      await server.close();
    }
  });

  it("starts empty without a file, and refuses a damaged one with the way out", () => {
    const state = new FakeMetaState();
    persistState(state, file).close();
    expect(state.listPages()).toEqual([]);
    writeFileSync(join(dir, "broken.json"), '{"version":1,"pages":[');
    expect(() => loadStateFile(join(dir, "broken.json"))).toThrow(StateFileError);
    expect(() => loadStateFile(join(dir, "broken.json"))).toThrow(/fake-meta:reset/);
    writeFileSync(join(dir, "other.json"), JSON.stringify({ version: 2 }));
    expect(() => loadStateFile(join(dir, "other.json"))).toThrow(StateFileError);
    expect(readFileSync(join(dir, "other.json"), "utf8")).toContain("2");
  });
});
