import { newApiKey } from "@switchboard/contracts";
import { createTokenCipher, generateTokenKey } from "@switchboard/crypto";
import { createMetricsRegistry } from "@switchboard/observability";
import express, { type Express } from "express";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestWorld, log, type TestWorld } from "../test-support";
import { createConversationsApi } from "./router";

const cipher = createTokenCipher(generateTokenKey("k1"));

describe("/v1/webhook-endpoints", () => {
  let world: TestWorld;
  /** Only public https targets, as in production. */
  let strict: Express;
  /** WEBHOOK_ALLOW_PRIVATE_TARGETS=true, as in tests and on laptops. */
  let relaxed: Express;
  const keys = { a: "", b: "" };

  const api = (allowPrivateTargets: boolean) =>
    express().use(
      createConversationsApi({
        db: world.db,
        bus: world.bus,
        log,
        metrics: createMetricsRegistry("webhook-api-test"),
        webhooks: { cipher, policy: { allowPrivateTargets } },
      }),
    );

  beforeAll(async () => {
    world = await createTestWorld();
    for (const company of ["a", "b"] as const) {
      const { key, keyHash, prefix } = newApiKey();
      await world.db.apiKey.create({ data: { companyId: `company-${company}`, keyHash, prefix } });
      keys[company] = key;
    }
    strict = api(false);
    relaxed = api(true);
  });
  afterAll(async () => {
    await world?.close();
  });

  const as = (key: string) => `Bearer ${key}`;

  it("creates an endpoint and shows its whsec_ secret once, stored encrypted", async () => {
    const created = await request(strict)
      .post("/v1/webhook-endpoints")
      .set("Authorization", as(keys.a))
      .send({ url: "https://hooks.example.com/switchboard", events: ["message.created"], description: "crm" })
      .expect(201);
    expect(created.body).toMatchObject({
      url: "https://hooks.example.com/switchboard",
      events: ["message.created"],
      description: "crm",
      enabled: true,
      health: { pending: 0, failingSince: null },
    });
    expect(created.body.secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    const row = await world.db.webhookEndpoint.findUniqueOrThrow({ where: { id: created.body.id } });
    expect(row.secretEnc).not.toContain(created.body.secret.slice(6));

    const fetched = await request(strict)
      .get(`/v1/webhook-endpoints/${created.body.id}`)
      .set("Authorization", as(keys.a))
      .expect(200);
    expect(fetched.body.secret).toBeUndefined();
    const listed = await request(strict)
      .get("/v1/webhook-endpoints")
      .set("Authorization", as(keys.a))
      .expect(200);
    expect(listed.body.data.map((e: { id: string }) => e.id)).toContain(created.body.id);
  });

  it("refuses http, private, loopback and link-local targets unless WEBHOOK_ALLOW_PRIVATE_TARGETS", async () => {
    for (const url of [
      "http://hooks.example.com/x",
      "https://127.0.0.1/x",
      "https://10.1.2.3/x",
      "https://169.254.169.254/latest/meta-data",
      "https://[::1]/x",
      "https://localhost/x",
      "not a url",
    ]) {
      const refused = await request(strict)
        .post("/v1/webhook-endpoints")
        .set("Authorization", as(keys.a))
        .send({ url })
        .expect(400);
      expect(refused.body.error.code).toBe("invalid_request");
      expect(refused.body.error.issues[0].path).toBe("url");
    }
    await request(relaxed)
      .post("/v1/webhook-endpoints")
      .set("Authorization", as(keys.a))
      .send({ url: "http://127.0.0.1:9999/hooks" })
      .expect(201);
  });

  it("validates the body: unknown event types and unknown fields are 400", async () => {
    const bad = await request(strict)
      .post("/v1/webhook-endpoints")
      .set("Authorization", as(keys.a))
      .send({ url: "https://hooks.example.com/x", events: ["message.exploded"] })
      .expect(400);
    expect(bad.body.error.issues[0].path).toBe("events.0");
    await request(strict)
      .post("/v1/webhook-endpoints")
      .set("Authorization", as(keys.a))
      .send({ url: "https://hooks.example.com/x", secret: "whsec_mine" })
      .expect(400);
  });

  it("answers 404 for another company's endpoint on every route", async () => {
    const created = await request(strict)
      .post("/v1/webhook-endpoints")
      .set("Authorization", as(keys.a))
      .send({ url: "https://hooks.example.com/a" })
      .expect(201);
    const id = created.body.id as string;
    const other = as(keys.b);
    await request(strict).get(`/v1/webhook-endpoints/${id}`).set("Authorization", other).expect(404);
    await request(strict)
      .patch(`/v1/webhook-endpoints/${id}`)
      .set("Authorization", other)
      .send({ enabled: false })
      .expect(404);
    await request(strict).delete(`/v1/webhook-endpoints/${id}`).set("Authorization", other).expect(404);
    await request(strict)
      .post(`/v1/webhook-endpoints/${id}/rotate-secret`)
      .set("Authorization", other)
      .expect(404);
    await request(strict)
      .get(`/v1/webhook-endpoints/${id}/deliveries`)
      .set("Authorization", other)
      .expect(404);
    const theirs = await request(strict).get("/v1/webhook-endpoints").set("Authorization", other).expect(200);
    expect(theirs.body.data.map((e: { id: string }) => e.id)).not.toContain(id);
    await request(strict).get(`/v1/webhook-endpoints/${id}`).expect(401);
  });

  it("updates, rotates the secret (the old one kept 24 h), lists deliveries and deletes", async () => {
    const created = await request(strict)
      .post("/v1/webhook-endpoints")
      .set("Authorization", as(keys.a))
      .send({ url: "https://hooks.example.com/b" })
      .expect(201);
    const id = created.body.id as string;
    const patched = await request(strict)
      .patch(`/v1/webhook-endpoints/${id}`)
      .set("Authorization", as(keys.a))
      .send({
        url: "https://hooks.example.com/c",
        events: ["message.sent", "message.failed"],
        enabled: false,
      })
      .expect(200);
    expect(patched.body).toMatchObject({
      url: "https://hooks.example.com/c",
      events: ["message.sent", "message.failed"],
      enabled: false,
      disabledReason: "disabled by the company",
    });
    const enabled = await request(strict)
      .patch(`/v1/webhook-endpoints/${id}`)
      .set("Authorization", as(keys.a))
      .send({ enabled: true, events: null })
      .expect(200);
    expect(enabled.body).toMatchObject({ enabled: true, disabledReason: null, events: null });

    const rotated = await request(strict)
      .post(`/v1/webhook-endpoints/${id}/rotate-secret`)
      .set("Authorization", as(keys.a))
      .expect(200);
    expect(rotated.body.secret).toMatch(/^whsec_/);
    expect(rotated.body.secret).not.toBe(created.body.secret);
    const expires = new Date(rotated.body.previousSecretExpiresAt).getTime();
    expect(expires - Date.now()).toBeGreaterThan(23.9 * 3_600_000);

    const deliveries = await request(strict)
      .get(`/v1/webhook-endpoints/${id}/deliveries`)
      .set("Authorization", as(keys.a))
      .expect(200);
    expect(deliveries.body).toEqual({ data: [], nextCursor: null });
    await request(strict)
      .post(`/v1/webhook-endpoints/${id}/deliveries/00000000-0000-0000-0000-000000000000/retry`)
      .set("Authorization", as(keys.a))
      .expect(404);

    await request(strict).delete(`/v1/webhook-endpoints/${id}`).set("Authorization", as(keys.a)).expect(204);
    await request(strict).get(`/v1/webhook-endpoints/${id}`).set("Authorization", as(keys.a)).expect(404);
  });

  it("documents the routes in the OpenAPI document", async () => {
    const document = await request(strict).get("/v1/openapi.json").expect(200);
    expect(Object.keys(document.body.paths)).toEqual(
      expect.arrayContaining([
        "/v1/webhook-endpoints",
        "/v1/webhook-endpoints/{endpointId}",
        "/v1/webhook-endpoints/{endpointId}/rotate-secret",
        "/v1/webhook-endpoints/{endpointId}/deliveries",
        "/v1/webhook-endpoints/{endpointId}/deliveries/{deliveryId}/retry",
      ]),
    );
    expect(document.body.components.schemas.WebhookDeliveryBody).toBeDefined();
    const delivery = document.body.webhooks["switchboard-event"].post;
    expect(delivery.requestBody.content["application/json"].schema.$ref).toBe(
      "#/components/schemas/WebhookDeliveryBody",
    );
    expect(delivery.parameters.map((p: { name: string }) => p.name)).toEqual([
      "webhook-id",
      "webhook-timestamp",
      "webhook-signature",
    ]);
  });
});
