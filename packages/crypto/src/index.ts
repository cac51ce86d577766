import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";

/**
 * Page tokens at rest: AES-256-GCM, a random 96-bit nonce per token, and the key id inside the
 * ciphertext (`v2.<keyId>.<nonce>.<tag>.<data>`, base64url) so keys rotate without downtime: the
 * first key of `TOKEN_ENCRYPTION_KEYS` encrypts, every listed key decrypts.
 *
 * A `v2` ciphertext is bound to a context (its page) through the AAD, so a token copied into another
 * page's row fails authentication. `v1` (AAD = key id only) is still read, so rows written before the
 * binding keep working until `pages rotate-tokens` rewrites them as `v2`.
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

/** What a ciphertext is bound to, e.g. `page:<pageId>`; decrypting needs the same context. */
export interface TokenBinding {
  context: string;
}

export interface TokenCipher {
  encrypt(plaintext: string, binding: TokenBinding): string;
  decrypt(ciphertext: string, binding: TokenBinding): string;
  /** The id of the key that encrypted this ciphertext (to find tokens still on an old key). */
  keyIdOf(ciphertext: string): string;
  /** True when the ciphertext is in the current, context-bound format on the current key. */
  isCurrent(ciphertext: string): boolean;
  readonly currentKeyId: string;
}

const CURRENT_FORMAT = "v2";
const FORMATS = new Set(["v1", CURRENT_FORMAT]);
const NONCE_BYTES = 12;
// GCM accepts tags down to 4 bytes and Node verifies whatever length it is given, so a cut tag
// would pass with far fewer bits of authentication: fix the length.
const TAG_BYTES = 16;

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
    const fields = ciphertext.split(".");
    const [format, keyId, nonce, tag, data] = fields;
    if (fields.length !== 5 || !format || !FORMATS.has(format) || !keyId || !nonce || !tag) {
      throw new TokenDecryptionError(
        "ciphertext is not a Switchboard token (v2.<keyId>.<nonce>.<tag>.<data>)",
      );
    }
    return { format, keyId, nonce, tag, data: data ?? "" };
  };

  return {
    currentKeyId: current.id,
    encrypt(plaintext, binding) {
      const nonce = randomBytes(NONCE_BYTES);
      const cipher = createCipheriv("aes-256-gcm", current.key, nonce, { authTagLength: TAG_BYTES });
      cipher.setAAD(additionalData(CURRENT_FORMAT, current.id, binding));
      const data = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
      const tag = cipher.getAuthTag();
      return [
        CURRENT_FORMAT,
        current.id,
        nonce.toString("base64url"),
        tag.toString("base64url"),
        data.toString("base64url"),
      ].join(".");
    },
    decrypt(ciphertext, binding) {
      const { format, keyId, ...encoded } = parts(ciphertext);
      const aad = additionalData(format, keyId, binding);
      const key = byId.get(keyId);
      if (!key) throw new TokenDecryptionError(`token was encrypted with unknown key "${keyId}"`);
      const nonce = Buffer.from(encoded.nonce, "base64url");
      const tag = Buffer.from(encoded.tag, "base64url");
      if (nonce.length !== NONCE_BYTES) {
        throw new TokenDecryptionError(`token nonce is ${nonce.length} bytes, expected ${NONCE_BYTES}`);
      }
      if (tag.length !== TAG_BYTES) {
        throw new TokenDecryptionError(`token auth tag is ${tag.length} bytes, expected ${TAG_BYTES}`);
      }
      try {
        const decipher = createDecipheriv("aes-256-gcm", key, nonce, { authTagLength: TAG_BYTES });
        decipher.setAAD(aad);
        decipher.setAuthTag(tag);
        return Buffer.concat([
          decipher.update(Buffer.from(encoded.data, "base64url")),
          decipher.final(),
        ]).toString("utf8");
      } catch (cause) {
        throw new TokenDecryptionError(
          `token failed authentication with key "${keyId}" (tampered, wrong key or another page's token)`,
          { cause },
        );
      }
    },
    keyIdOf(ciphertext) {
      return parts(ciphertext).keyId;
    },
    isCurrent(ciphertext) {
      const { format, keyId } = parts(ciphertext);
      return format === CURRENT_FORMAT && keyId === current.id;
    },
  };
}

/**
 * v1: the key id. v2: format, key id and context; key ids hold no ".", so the first two dots delimit
 * them and a v2 token relabelled `v1` (or bound elsewhere) fails authentication.
 */
function additionalData(format: string, keyId: string, { context }: TokenBinding): Buffer {
  if (!context) throw new TypeError("a token binding needs a non-empty context (e.g. its page)");
  return Buffer.from(format === "v1" ? keyId : `${format}.${keyId}.${context}`);
}

/** `<id>:<random base64 key>`, for `.env` files and key rotation. */
export function generateTokenKey(id: string): string {
  return `${id}:${randomBytes(32).toString("base64")}`;
}
