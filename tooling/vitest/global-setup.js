/**
 * Hands every test file the URLs of a real Postgres, Redis and NATS: containers started by
 * testcontainers when a Docker engine answers, otherwise the local services from DATABASE_URL,
 * REDIS_URL and NATS_URL. Isolation inside them (database, namespace, key prefix) is per test file.
 */
import { waitForLocalServices } from "./local-services.js";

const local = {
  databaseUrl: process.env.DATABASE_URL || "postgresql://postgres@127.0.0.1:5432/postgres",
  redisUrl: process.env.REDIS_URL || "redis://127.0.0.1:6379",
  natsUrl: process.env.NATS_URL || "nats://127.0.0.1:4222",
};

async function dockerReachable(tc) {
  if (process.env.SB_TEST_CONTAINERS === "off") return false;
  try {
    await Promise.race([
      tc.getContainerRuntimeClient(),
      new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), 5000)),
    ]);
    return true;
  } catch {
    return false;
  }
}

export default async function setup({ provide }) {
  const tc = await import("testcontainers");
  if (!(await dockerReachable(tc))) {
    // A machine that has just booted may still be starting them (SB_TEST_SERVICES_WAIT_SECONDS, default 120).
    let said = "";
    await waitForLocalServices(local, {
      timeoutMs: Number(process.env.SB_TEST_SERVICES_WAIT_SECONDS || 120) * 1000,
      onWait: (waiting) => {
        const line = `waiting for the local ${waiting.join(", ")} to answer`;
        if (line !== said) console.warn(line);
        said = line;
      },
    });
    provide("services", { ...local, source: "local" });
    return;
  }
  const { GenericContainer, Wait } = tc;
  const [pg, redis, nats] = await Promise.all([
    new GenericContainer("postgres:16-alpine")
      .withEnvironment({ POSTGRES_HOST_AUTH_METHOD: "trust" })
      .withExposedPorts(5432)
      .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
      .start(),
    new GenericContainer("redis:7-alpine").withExposedPorts(6379).start(),
    new GenericContainer("nats:2.10-alpine").withCommand(["-js"]).withExposedPorts(4222).start(),
  ]);
  provide("services", {
    databaseUrl: `postgresql://postgres@${pg.getHost()}:${pg.getMappedPort(5432)}/postgres`,
    redisUrl: `redis://${redis.getHost()}:${redis.getMappedPort(6379)}`,
    natsUrl: `nats://${nats.getHost()}:${nats.getMappedPort(4222)}`,
    source: "testcontainers",
  });
  return async () => {
    await Promise.all([pg.stop(), redis.stop(), nats.stop()]);
  };
}
