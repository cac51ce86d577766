import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { generateEndpointSecret, SECRET_PREFIX, signatureOf, signDelivery } from "./signature";

const body = JSON.stringify({ type: "message.received", data: { text: "héllo" } });
// The reference implementation refuses timestamps more than five minutes away from now.
const now = () => Math.floor(Date.now() / 1000);

describe("Standard Webhooks signing", () => {
  it("produces a delivery the reference implementation verifies", () => {
    const secret = generateEndpointSecret();
    const headers = signDelivery({ id: "msg_1", timestampSeconds: now(), body, secrets: [secret] });
    expect(new Webhook(secret).verify(body, { ...headers })).toEqual(JSON.parse(body));
  });

  it("signs exactly as the reference implementation does", () => {
    const secret = generateEndpointSecret();
    const at = now();
    expect(signatureOf(secret, "msg_2", at, body)).toBe(
      new Webhook(secret).sign("msg_2", new Date(at * 1000), body),
    );
  });

  it("while rotating, each secret alone verifies", () => {
    const [current, previous, unrelated] = [
      generateEndpointSecret(),
      generateEndpointSecret(),
      generateEndpointSecret(),
    ];
    const headers = signDelivery({
      id: "msg_3",
      timestampSeconds: now(),
      body,
      secrets: [current, previous],
    });
    expect(headers["webhook-signature"].split(" ")).toHaveLength(2);
    expect(() => new Webhook(current).verify(body, { ...headers })).not.toThrow();
    expect(() => new Webhook(previous).verify(body, { ...headers })).not.toThrow();
    expect(() => new Webhook(unrelated).verify(body, { ...headers })).toThrow();
  });

  it("a tampered body or id does not verify", () => {
    const secret = generateEndpointSecret();
    const headers = signDelivery({ id: "msg_4", timestampSeconds: now(), body, secrets: [secret] });
    const webhook = new Webhook(secret);
    expect(() => webhook.verify(body.replace("héllo", "hello"), { ...headers })).toThrow();
    expect(() => webhook.verify(body, { ...headers, "webhook-id": "msg_5" })).toThrow();
  });

  it("generates whsec_ secrets of 24 random bytes", () => {
    const secret = generateEndpointSecret();
    expect(secret.startsWith(SECRET_PREFIX)).toBe(true);
    expect(secret.startsWith("whsec_")).toBe(true);
    expect(Buffer.from(secret.slice("whsec_".length), "base64")).toHaveLength(24);
    expect(generateEndpointSecret()).not.toBe(secret);
  });

  it("refuses to sign without a secret or with a malformed one", () => {
    expect(() => signDelivery({ id: "msg_6", timestampSeconds: now(), body, secrets: [] })).toThrow();
    expect(() => signatureOf("not-a-secret", "msg_6", now(), body)).toThrow(/whsec_/);
  });
});
