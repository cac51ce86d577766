import { describe, expect, it } from "vitest";
import { createTokenCipher, generateTokenKey, TokenDecryptionError, TokenKeyConfigError } from "./index";

const k1 = generateTokenKey("k1");
const k2 = generateTokenKey("k2");
const pageA = { context: "page:1001" };
const pageB = { context: "page:1002" };

/** A row written before tokens were bound to their page (`v1`, AAD = key id only), kept as it was stored. */
const legacyKey = "legacy:S3mGTDB0yc3d44VxHsqSZT52tujIkuYZ9oV7nWNcCEo=";
const legacyToken = "v1.legacy.E0PHZIm8UjUtMbYF.QzCQzGwdxdNKd78VXFqqsA.tCs4qdqeTLX1SePOYwlcJXhlBC8";

const withPart = (token: string, index: number, value: Buffer) => {
  const parts = token.split(".");
  parts[index] = value.toString("base64url");
  return parts.join(".");
};
const part = (token: string, index: number) => Buffer.from(token.split(".")[index]!, "base64url");

describe("token cipher", () => {
  it("round-trips and never repeats a ciphertext", () => {
    const cipher = createTokenCipher(k1);
    const a = cipher.encrypt("EAAB-page-token", pageA);
    const b = cipher.encrypt("EAAB-page-token", pageA);
    expect(a).not.toBe(b);
    expect(a).not.toContain("EAAB");
    expect(a.startsWith("v2.k1.")).toBe(true);
    expect(cipher.decrypt(a, pageA)).toBe("EAAB-page-token");
    expect(cipher.keyIdOf(a)).toBe("k1");
  });

  it("rotates: the first key encrypts, all keys decrypt", () => {
    const old = createTokenCipher(k1).encrypt("old-token", pageA);
    const rotated = createTokenCipher(`${k2},${k1}`);
    expect(rotated.decrypt(old, pageA)).toBe("old-token");
    expect(rotated.keyIdOf(rotated.encrypt("new", pageA))).toBe("k2");
  });

  it("binds a ciphertext to its page: copied to another page's row it does not decrypt", () => {
    const cipher = createTokenCipher(k1);
    const token = cipher.encrypt("EAAB-page-a", pageA);
    expect(() => cipher.decrypt(token, pageB)).toThrow(TokenDecryptionError);
    expect(() => cipher.decrypt(token, pageB)).toThrow(/tampered, wrong key or another page's token/);
    // Relabelled as v1 (whose AAD has no page) it must not slip past the binding either.
    expect(() => cipher.decrypt(token.replace(/^v2\./, "v1."), pageB)).toThrow(TokenDecryptionError);
    expect(() => cipher.encrypt("x", { context: "" })).toThrow(/context/);
    expect(() => cipher.decrypt(token, { context: "" })).toThrow(/context/);
  });

  it("still decrypts a v1 token stored before page binding, and reports it as due for re-encryption", () => {
    const cipher = createTokenCipher(legacyKey);
    expect(cipher.decrypt(legacyToken, pageA)).toBe("EAAB-v1-legacy-token");
    expect(cipher.keyIdOf(legacyToken)).toBe("legacy");
    expect(cipher.isCurrent(legacyToken)).toBe(false);
    expect(cipher.isCurrent(cipher.encrypt("EAAB-v1-legacy-token", pageA))).toBe(true);
    const onOldKey = createTokenCipher(k2).encrypt("t", pageA);
    expect(createTokenCipher(`${k1},${k2}`).isCurrent(onOldKey)).toBe(false);
  });

  it("rejects an auth tag that is not 16 bytes and a nonce that is not 12 bytes", () => {
    const cipher = createTokenCipher(k1);
    const token = cipher.encrypt("secret-token", pageA);
    // GCM verifies a truncated tag by its prefix; Node accepts one unless the tag length is fixed.
    const shortTag = withPart(token, 3, part(token, 3).subarray(0, 4));
    expect(() => cipher.decrypt(shortTag, pageA)).toThrow(TokenDecryptionError);
    expect(() => cipher.decrypt(shortTag, pageA)).toThrow(/auth tag is 4 bytes, expected 16/);
    const legacyShortTag = withPart(legacyToken, 3, part(legacyToken, 3).subarray(0, 4));
    expect(() => createTokenCipher(legacyKey).decrypt(legacyShortTag, pageA)).toThrow(
      /auth tag is 4 bytes, expected 16/,
    );
    const longNonce = withPart(token, 2, Buffer.concat([part(token, 2), Buffer.alloc(4)]));
    expect(() => cipher.decrypt(longNonce, pageA)).toThrow(/nonce is 16 bytes, expected 12/);
  });

  it("fails clearly on a tampered ciphertext, an unknown key or a swapped key id", () => {
    const cipher = createTokenCipher(k1);
    const token = cipher.encrypt("secret-token", pageA);
    const parts = token.split(".");
    const flipped = parts[4]!.startsWith("A") ? `B${parts[4]!.slice(1)}` : `A${parts[4]!.slice(1)}`;
    expect(() => cipher.decrypt([...parts.slice(0, 4), flipped].join("."), pageA)).toThrow(/tampered/);
    expect(() => createTokenCipher(k2).decrypt(token, pageA)).toThrow(TokenDecryptionError);
    expect(() => createTokenCipher(k2).decrypt(token, pageA)).toThrow(/unknown key "k1"/);
    const sameBytesOtherId = `${k2.split(":")[0]}:${k1.split(":")[1]}`;
    expect(() => createTokenCipher(sameBytesOtherId).decrypt(token.replace(".k1.", ".k2."), pageA)).toThrow(
      /tampered/,
    );
    expect(() => cipher.decrypt("plain-token", pageA)).toThrow(/not a Switchboard token/);
    expect(() => cipher.decrypt(`${token}.extra`, pageA)).toThrow(/not a Switchboard token/);
  });

  it("rejects bad key specs", () => {
    expect(() => createTokenCipher("")).toThrow(TokenKeyConfigError);
    expect(() => createTokenCipher("k1:c2hvcnQ=")).toThrow(/not 32 bytes/);
    expect(() => createTokenCipher(`${k1},${k1}`)).toThrow(/twice/);
  });
});
