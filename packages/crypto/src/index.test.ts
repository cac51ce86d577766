import { describe, expect, it } from "vitest";
import { createTokenCipher, generateTokenKey, TokenDecryptionError, TokenKeyConfigError } from "./index";

const k1 = generateTokenKey("k1");
const k2 = generateTokenKey("k2");

describe("token cipher", () => {
  it("round-trips and never repeats a ciphertext", () => {
    const cipher = createTokenCipher(k1);
    const a = cipher.encrypt("EAAB-page-token");
    const b = cipher.encrypt("EAAB-page-token");
    expect(a).not.toBe(b);
    expect(a).not.toContain("EAAB");
    expect(cipher.decrypt(a)).toBe("EAAB-page-token");
    expect(cipher.keyIdOf(a)).toBe("k1");
  });

  it("rotates: the first key encrypts, all keys decrypt", () => {
    const old = createTokenCipher(k1).encrypt("old-token");
    const rotated = createTokenCipher(`${k2},${k1}`);
    expect(rotated.decrypt(old)).toBe("old-token");
    expect(rotated.keyIdOf(rotated.encrypt("new"))).toBe("k2");
  });

  it("fails clearly on a tampered ciphertext, an unknown key or a swapped key id", () => {
    const cipher = createTokenCipher(k1);
    const token = cipher.encrypt("secret-token");
    const parts = token.split(".");
    const flipped = parts[4]!.startsWith("A") ? `B${parts[4]!.slice(1)}` : `A${parts[4]!.slice(1)}`;
    expect(() => cipher.decrypt([...parts.slice(0, 4), flipped].join("."))).toThrow(/tampered/);
    expect(() => createTokenCipher(k2).decrypt(token)).toThrow(TokenDecryptionError);
    expect(() => createTokenCipher(k2).decrypt(token)).toThrow(/unknown key "k1"/);
    const sameBytesOtherId = `${k2.split(":")[0]}:${k1.split(":")[1]}`;
    expect(() => createTokenCipher(sameBytesOtherId).decrypt(token.replace(".k1.", ".k2."))).toThrow(
      /tampered/,
    );
    expect(() => cipher.decrypt("plain-token")).toThrow(/not a Switchboard v1 token/);
  });

  it("rejects bad key specs", () => {
    expect(() => createTokenCipher("")).toThrow(TokenKeyConfigError);
    expect(() => createTokenCipher("k1:c2hvcnQ=")).toThrow(/not 32 bytes/);
    expect(() => createTokenCipher(`${k1},${k1}`)).toThrow(/twice/);
  });
});
