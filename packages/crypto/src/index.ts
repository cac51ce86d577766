import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";

/**
 * Page tokens at rest: AES-256-GCM, a random 96-bit nonce per token, and the key id inside the
 * ciphertext (`v1.<keyId>.<nonce>.<tag>.<data>`, base64url) so keys rotate without downtime: the
 * first key of `TOKEN_ENCRYPTION_KEYS` encrypts, every listed key decrypts.
 */
export class TokenDecryptionError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TokenDecryptionError";
  }
}

export class TokenKeyConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TokenKeyConfigError";
  }
}

export interface TokenCipher {
  encrypt(plaintext: string): string;
  decrypt(ciphertext: string): string;
  /** The id of the key that encrypted this ciphertext (to find tokens still on an old key). */
  keyIdOf(ciphertext: string): string;
  readonly currentKeyId: string;
}

const FORMAT = "v1";

/** Parses `id:base64key,id2:base64key2`; each key must decode to 32 bytes. */
export function parseTokenKeys(spec: string): Array<{ id: string; key: Buffer }> {
  const entries = spec
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (entries.length === 0) throw new TokenKeyConfigError("TOKEN_ENCRYPTION_KEYS lists no key");
  const seen = new Set<string>();
  return entries.map((entry) => {
    const at = entry.indexOf(":");
    const id = entry.slice(0, at);
    if (at <= 0 || !/^[A-Za-z0-9_-]+$/.test(id)) {
      throw new TokenKeyConfigError("TOKEN_ENCRYPTION_KEYS entries must look like <id>:<base64 32-byte key>");
    }
    const key = Buffer.from(entry.slice(at + 1), "base64");
    if (key.length !== 32) throw new TokenKeyConfigError(`TOKEN_ENCRYPTION_KEYS key "${id}" is not 32 bytes`);
    if (seen.has(id)) throw new TokenKeyConfigError(`TOKEN_ENCRYPTION_KEYS lists key "${id}" twice`);
    seen.add(id);
    return { id, key };
  });
}

export function createTokenCipher(spec: string): TokenCipher {
  const keys = parseTokenKeys(spec);
  const byId = new Map(keys.map((k) => [k.id, k.key]));
  const current = keys[0]!;

  const parts = (ciphertext: string) => {
    const [format, keyId, nonce, tag, data] = ciphertext.split(".");
    if (format !== FORMAT || !keyId || !nonce || !tag || data === undefined) {
      throw new TokenDecryptionError("ciphertext is not a Switchboard v1 token");
    }
    return { keyId, nonce, tag, data };
  };

  return {
    currentKeyId: current.id,
    encrypt(plaintext) {
      const nonce = randomBytes(12);
      const cipher = createCipheriv("aes-256-gcm", current.key, nonce);
      cipher.setAAD(Buffer.from(current.id));
      const data = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
      const tag = cipher.getAuthTag();
      return [
        FORMAT,
        current.id,
        nonce.toString("base64url"),
        tag.toString("base64url"),
        data.toString("base64url"),
      ].join(".");
    },
    decrypt(ciphertext) {
      const { keyId, nonce, tag, data } = parts(ciphertext);
      const key = byId.get(keyId);
      if (!key) throw new TokenDecryptionError(`token was encrypted with unknown key "${keyId}"`);
      try {
        const decipher = createDecipheriv("aes-256-gcm", key, Buffer.from(nonce, "base64url"));
        decipher.setAAD(Buffer.from(keyId));
        decipher.setAuthTag(Buffer.from(tag, "base64url"));
        return Buffer.concat([decipher.update(Buffer.from(data, "base64url")), decipher.final()]).toString(
          "utf8",
        );
      } catch (cause) {
        throw new TokenDecryptionError(
          `token failed authentication with key "${keyId}" (tampered or wrong key)`,
          {
            cause,
          },
        );
      }
    },
    keyIdOf(ciphertext) {
      return parts(ciphertext).keyId;
    },
  };
}

/** `<id>:<random base64 key>`, for `.env` files and key rotation. */
export function generateTokenKey(id: string): string {
  return `${id}:${randomBytes(32).toString("base64")}`;
}
