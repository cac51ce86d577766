import type { Finding, K8sObject } from "./manifests";
import { objectName } from "./manifests";

interface ValidationError {
  instancePath: string;
  message?: string;
  keyword: string;
  params: Record<string, unknown>;
}

type Validate = (this: unknown) => void;

/** Model packages of custom resources, by API group (core Kubernetes kinds come from kubernetes-models). */
const CUSTOM_RESOURCE_MODELS: Record<string, string> = {
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};

/**
 * The validator the model package ships for an apiVersion/kind (the OpenAPI schema compiled with ajv),
 * or undefined for a kind no installed package knows.
 */
async function validatorFor(apiVersion: string, kind: string): Promise<Validate | undefined> {
  if (!/^[\w.-]+(\/\w+)?$/.test(apiVersion) || !/^\w+$/.test(kind)) return undefined;
  const group = apiVersion.includes("/") ? apiVersion.split("/")[0]! : "";
  const models = CUSTOM_RESOURCE_MODELS[group] ?? "kubernetes-models";
  try {
    const module = (await import(/* @vite-ignore */ `${models}/${apiVersion}/${kind}`)) as Record<
      string,
      { prototype?: { validate?: Validate } }
    >;
    return module[kind]?.prototype?.validate;
  } catch {
    return undefined;
  }
}

/**
 * Validates an object against its Kubernetes schema, and reports fields the schema does not have.
 *
 * The schemas leave `additionalProperties` open, so a misspelt field (`livenesProbe`) passes them and
 * the API server silently drops it. The compiled validator reads every property its schema declares,
 * so the object is validated through proxies that record each property read: a property nobody read
 * is not in the schema. Maps (labels, ConfigMap data) are read key by key and so never reported.
 */
export async function validateSchema(object: K8sObject): Promise<Finding[]> {
  const name = objectName(object);
  const validate = await validatorFor(String(object.apiVersion), String(object.kind));
  if (!validate) {
    return [
      {
        rule: "schema",
        object: name,
        message: `no schema for ${object.apiVersion} ${object.kind}: add its model package to CUSTOM_RESOURCE_MODELS`,
      },
    ];
  }
  const reads = new Map<object, Set<PropertyKey>>();
  const tracked = track(object, reads);
  const findings: Finding[] = [];
  try {
    validate.call(tracked);
  } catch (error) {
    const errors = (error as { errors?: ValidationError[] }).errors ?? [];
    for (const e of errors) {
      findings.push({ rule: "schema", object: name, message: `${e.instancePath || "/"}: ${describe(e)}` });
    }
    if (errors.length === 0) findings.push({ rule: "schema", object: name, message: String(error) });
  }
  for (const path of unreadFields(object, reads, "")) {
    findings.push({
      rule: "unknown-field",
      object: name,
      message: `${path} is not a field of ${object.kind}`,
    });
  }
  return findings;
}

function describe(error: ValidationError): string {
  if (error.keyword === "required") return `missing required field ${String(error.params.missingProperty)}`;
  if (error.keyword === "type") return `must be ${String(error.params.type)}`;
  if (error.keyword === "enum") return `must be one of ${JSON.stringify(error.params.allowedValues)}`;
  return error.message ?? error.keyword;
}

function isContainer(value: unknown): value is object {
  return typeof value === "object" && value !== null;
}

function track(value: unknown, reads: Map<object, Set<PropertyKey>>): unknown {
  if (!isContainer(value)) return value;
  const seen = new Set<PropertyKey>();
  reads.set(value, seen);
  const children = new Map<PropertyKey, unknown>();
  return new Proxy(value, {
    get(target, key, receiver) {
      seen.add(key);
      const child = Reflect.get(target, key, receiver);
      if (!isContainer(child)) return child;
      if (!children.has(key)) children.set(key, track(child, reads));
      return children.get(key);
    },
    has(target, key) {
      seen.add(key);
      return Reflect.has(target, key);
    },
  });
}

function* unreadFields(
  value: unknown,
  reads: Map<object, Set<PropertyKey>>,
  path: string,
): Generator<string> {
  if (!isContainer(value)) return;
  const seen = reads.get(value);
  if (!seen) return; // the validator never looked inside: free-form, or under a field already reported
  for (const [key, child] of Object.entries(value)) {
    const childPath = `${path}/${key}`;
    if (!Array.isArray(value) && !seen.has(key)) yield childPath;
    else yield* unreadFields(child, reads, childPath);
  }
}
