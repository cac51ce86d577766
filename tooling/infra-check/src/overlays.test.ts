// biome-ignore-all lint/suspicious/noExplicitAny: tests read and mutate rendered manifests as plain JSON
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { checkNoPrivateTargets, checkNoTestDoubles, checkRepository } from "./check";
import { type K8sObject, renderKustomization } from "./manifests";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const render = (overlay: string) => renderKustomization(join(root, "infra/k8s/overlays", overlay));
const services = [
  "ingress",
  "page-router",
  "message-service",
  "subscription-service",
  "webhook-dispatcher",
  "console",
];

const find = (objects: K8sObject[], kind: string, name: string) =>
  objects.find((o) => o.kind === kind && o.metadata.name === name) as any;

describe("pnpm infra:check", () => {
  it("finds nothing wrong in the real overlays and image recipe", async () => {
    const report = await checkRepository(root);
    expect(report.findings).toEqual([]);
    expect(report.checked).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^infra\/k8s\/overlays\/local \(\d+ objects\)$/),
        expect.stringMatching(/^infra\/k8s\/overlays\/production \(\d+ objects\)$/),
      ]),
    );
  });
});

describe.each(["local", "production"])("the %s overlay", (overlay) => {
  const objects = render(overlay);

  it("gives each service a Deployment, Service, ServiceAccount, ConfigMap, PDB and NetworkPolicy", () => {
    for (const name of services) {
      for (const kind of [
        "Deployment",
        "Service",
        "ServiceAccount",
        "ConfigMap",
        "PodDisruptionBudget",
        "NetworkPolicy",
      ]) {
        expect(find(objects, kind, name), `${kind}/${name}`).toBeDefined();
      }
    }
    const autoscaled = objects
      .filter((o) => o.kind === "HorizontalPodAutoscaler")
      .map((o) => o.metadata.name);
    expect(autoscaled.sort()).toEqual(["ingress", "message-service", "page-router"]);
  });

  it("lets the public Ingress pass exactly the webhook bodies the ingress accepts (WEBHOOK_BODY_LIMIT)", () => {
    const proxy = (objects.find((o) => o.kind === "Ingress") as any).metadata.annotations[
      "nginx.ingress.kubernetes.io/proxy-body-size"
    ];
    const limit = find(objects, "ConfigMap", "ingress").data.WEBHOOK_BODY_LIMIT;
    expect(`${proxy}b`.toLowerCase()).toBe(limit.toLowerCase());
  });

  it("denies all traffic by default", () => {
    const deny = find(objects, "NetworkPolicy", "default-deny");
    expect(deny.spec).toEqual({ podSelector: {}, policyTypes: ["Ingress", "Egress"] });
  });

  it("exposes only the webhook and the /v1 API", () => {
    const ingresses = objects.filter((o) => o.kind === "Ingress") as any[];
    expect(ingresses).toHaveLength(1);
    const paths = ingresses[0].spec.rules.flatMap((r: any) =>
      r.http.paths.map((p: any) => `${p.path} -> ${p.backend.service.name}:${p.backend.service.port.name}`),
    );
    expect(paths).toEqual(["/webhooks/facebook -> ingress:http", "/v1 -> message-service:http"]);
  });

  it("keeps the console private: only Prometheus may reach it, and no Ingress routes to it", () => {
    const ingressBackends = JSON.stringify(objects.filter((o) => o.kind === "Ingress"));
    expect(ingressBackends).not.toContain('"name":"console"');
    const policy = find(objects, "NetworkPolicy", "console");
    expect(policy.spec.ingress).toEqual([
      {
        from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } } }],
        ports: [{ protocol: "TCP", port: 3004 }],
      },
    ]);
  });

  it("lets the webhook-dispatcher out to NATS, Postgres and https on public addresses only, and in only from Prometheus", () => {
    const policy = find(objects, "NetworkPolicy", "webhook-dispatcher");
    expect(policy.spec.podSelector).toEqual({
      matchLabels: { "app.kubernetes.io/name": "webhook-dispatcher" },
    });
    expect(policy.spec.policyTypes).toEqual(["Ingress", "Egress"]);
    expect(policy.spec.ingress).toEqual([
      {
        from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } } }],
        ports: [{ protocol: "TCP", port: 3005 }],
      },
    ]);
    const egress = policy.spec.egress as any[];
    expect(egress).toContainEqual({ ports: [{ protocol: "TCP", port: 4222 }] });
    expect(egress).toContainEqual({ ports: [{ protocol: "TCP", port: 5432 }] });
    // Every rule that opens 443 is the public-only ipBlock; no rule opens every port or every address.
    const https = egress.filter((rule) => rule.ports?.some((p: any) => p.port === 443));
    expect(https).toHaveLength(1);
    expect(https[0].ports).toEqual([{ protocol: "TCP", port: 443 }]);
    expect(https[0].to).toHaveLength(1);
    expect(https[0].to[0].ipBlock.cidr).toBe("0.0.0.0/0");
    expect(https[0].to[0].ipBlock.except).toEqual(
      expect.arrayContaining([
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "127.0.0.0/8",
      ]),
    );
    for (const rule of egress) expect(rule.ports, JSON.stringify(rule)).toBeDefined();
  });

  it("gives the webhook-dispatcher only the Secret keys it uses", () => {
    const container = find(objects, "Deployment", "webhook-dispatcher").spec.template.spec.containers[0];
    const keys = container.env.map((e: any) => e.valueFrom?.secretKeyRef?.key).filter(Boolean);
    expect(keys.sort()).toEqual(["DATABASE_URL", "TOKEN_ENCRYPTION_KEYS"]);
    expect(container.ports).toEqual([{ name: "http", containerPort: 3005, protocol: "TCP" }]);
    expect(find(objects, "ConfigMap", "webhook-dispatcher").data.PORT).toBe("3005");
  });

  it("gives the console its OPERATOR_TOKEN from the Secret", () => {
    const env = find(objects, "Deployment", "console").spec.template.spec.containers[0].env;
    expect(env.find((e: any) => e.name === "OPERATOR_TOKEN").valueFrom.secretKeyRef).toEqual({
      name: "switchboard-secrets",
      key: "OPERATOR_TOKEN",
    });
  });

  it("reads secrets only from switchboard-secrets and commits none", () => {
    expect(objects.filter((o) => o.kind === "Secret")).toEqual([]);
    const refs: string[] = [];
    JSON.stringify(objects, (key, value) => {
      if (key === "secretKeyRef" || key === "secretRef") refs.push(value.name);
      return value;
    });
    expect(refs.length).toBeGreaterThan(0);
    expect(new Set(refs)).toEqual(new Set(["switchboard-secrets"]));
  });

  it("migrates the database, then the JetStream streams, with the message-service image of the same release", () => {
    const job = find(objects, "Job", "db-migrate");
    const service = find(objects, "Deployment", "message-service");
    const image = service.spec.template.spec.containers[0].image;
    const [db] = job.spec.template.spec.initContainers;
    const [bus] = job.spec.template.spec.containers;
    expect(db.image).toBe(image);
    expect(db.command.at(-1)).toBe("node_modules/@switchboard/db/dist/migrate-cli.js");
    // The streams' one owner: services only check that they exist.
    expect(bus.image).toBe(image);
    expect(bus.command.at(-1)).toBe("node_modules/@switchboard/bus/dist/migrate-cli.js");
    expect(bus.envFrom).toEqual([{ configMapRef: { name: "switchboard-shared" } }]);
  });
});

describe("the fake Meta (a test double)", () => {
  const local = render("local");

  it("runs in the local overlay only, with NODE_ENV overriding the image's production value", () => {
    const container = find(local, "Deployment", "fake-meta").spec.template.spec.containers[0];
    expect(container.image).toBe("switchboard/fake-meta:dev");
    expect(container.env.find((e: any) => e.name === "NODE_ENV").value).toBe("development");
    expect(find(local, "ConfigMap", "switchboard-shared").data.GRAPH_API_BASE_URL).toBe(
      "http://fake-meta:4000",
    );
  });

  it("is found by the test-double check wherever it appears: workloads, images, URLs", () => {
    const named = new Set(checkNoTestDoubles(local).map((f) => f.object));
    for (const object of [
      "Deployment/fake-meta",
      "Service/fake-meta",
      "ConfigMap/switchboard-shared",
      "NetworkPolicy/graph-clients-to-fake-meta",
    ]) {
      expect(named).toContain(object);
    }
    expect(checkNoTestDoubles(render("production"))).toEqual([]);
  });

  it("fails a production overlay that runs it", () => {
    const production = render("production");
    const leaked = [...production, find(local, "Deployment", "fake-meta")];
    expect(checkNoTestDoubles(leaked)).toEqual([
      expect.objectContaining({ rule: "test-double", object: "Deployment/fake-meta" }),
    ]);
  });
});

describe("private webhook targets (WEBHOOK_ALLOW_PRIVATE_TARGETS)", () => {
  const local = render("local");
  const production = render("production");

  it("are allowed in the local overlay only, for the message-service and the webhook-dispatcher", () => {
    expect(find(local, "ConfigMap", "switchboard-shared").data.WEBHOOK_ALLOW_PRIVATE_TARGETS).toBe("true");
    expect(checkNoPrivateTargets(local)).toEqual([
      expect.objectContaining({ rule: "private-targets", object: "ConfigMap/switchboard-shared" }),
    ]);
    expect(JSON.stringify(production)).not.toContain("WEBHOOK_ALLOW_PRIVATE_TARGETS");
    expect(checkNoPrivateTargets(production)).toEqual([]);
    // The laptop's receivers are reachable only from the local overlay.
    expect(find(local, "NetworkPolicy", "webhook-dispatcher-to-local-receivers")).toBeDefined();
    expect(find(production, "NetworkPolicy", "webhook-dispatcher-to-local-receivers")).toBeUndefined();
  });

  it("fail a production overlay that turns them on, in a ConfigMap or a container's env", () => {
    const config = structuredClone(find(production, "ConfigMap", "webhook-dispatcher"));
    config.data.WEBHOOK_ALLOW_PRIVATE_TARGETS = "true";
    const deployment = structuredClone(find(production, "Deployment", "message-service"));
    deployment.spec.template.spec.containers[0].env.push({
      name: "WEBHOOK_ALLOW_PRIVATE_TARGETS",
      value: "1",
    });
    const harmless = structuredClone(find(production, "ConfigMap", "message-service"));
    harmless.data.WEBHOOK_ALLOW_PRIVATE_TARGETS = "false";
    expect(checkNoPrivateTargets([config, deployment, harmless])).toEqual([
      expect.objectContaining({ rule: "private-targets", object: "ConfigMap/webhook-dispatcher" }),
      expect.objectContaining({ rule: "private-targets", object: "Deployment/message-service" }),
    ]);
  });
});

describe("the production overlay", () => {
  const objects = render("production");
  const shared = find(objects, "ConfigMap", "switchboard-shared").data;

  it("runs at least two replicas of every service", () => {
    for (const name of services)
      expect(find(objects, "Deployment", name).spec.replicas).toBeGreaterThanOrEqual(2);
    for (const hpa of objects.filter((o) => o.kind === "HorizontalPodAutoscaler") as any[]) {
      expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2);
    }
  });

  it("uses a 3-server NATS cluster with 3 stream replicas and 3 independent Redis nodes", () => {
    expect(shared.NATS_URL.split(",")).toHaveLength(3);
    expect(shared.NATS_STREAM_REPLICAS).toBe("3");
    expect(new Set(shared.REDIS_URL.split(",")).size).toBe(3);
  });

  it("runs the webhook canary against the public webhook URL, with one canary page id on both sides", () => {
    const consoleConfig = find(objects, "ConfigMap", "console").data;
    const router = find(objects, "ConfigMap", "page-router").data;
    const host = find(objects, "Ingress", "switchboard").spec.rules[0].host;
    expect(consoleConfig.CANARY_INGRESS_URL).toBe(`https://${host}/webhooks/facebook`);
    expect(consoleConfig.CANARY_PAGE_ID).toMatch(/^\d+$/);
    expect(router.CANARY_PAGE_ID).toBe(consoleConfig.CANARY_PAGE_ID);
  });

  it("pins every image to a release tag in a registry", () => {
    const images = [...JSON.stringify(objects).matchAll(/"image":"([^"]+)"/g)].map((m) => m[1]!);
    for (const image of images)
      expect(image).toMatch(/^registry\.example\.com\/switchboard\/[a-z-]+:\d+\.\d+\.\d+$/);
  });
});
