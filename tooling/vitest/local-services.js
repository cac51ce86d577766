import net from "node:net";

/**
 * Waits until the local Postgres, Redis and NATS answer their own protocol, not just TCP: on a machine
 * that has just booted (CI) they start at different times, and NATS came up after the first tests ran.
 * Dependency-free on purpose: it runs in vitest's global set-up, before any workspace package loads.
 *
 * @param {{ databaseUrl: string, redisUrl: string, natsUrl: string }} urls
 * @param {{ timeoutMs?: number, onWait?: (waiting: string[]) => void, pauseMs?: number }} [options]
 */
export async function waitForLocalServices(urls, options = {}) {
  const deadline = Date.now() + (options.timeoutMs ?? 120_000);
  const probes = {
    postgres: () => probePostgres(urls.databaseUrl),
    redis: () => probeRedis(urls.redisUrl),
    nats: () => probeNats(urls.natsUrl),
  };
  let waiting = Object.keys(probes);
  const problems = {};
  for (;;) {
    const results = await Promise.all(
      waiting.map(async (name) => {
        try {
          await probes[name]();
          return null;
        } catch (error) {
          problems[name] = error instanceof Error ? error.message : String(error);
          return name;
        }
      }),
    );
    waiting = results.filter((name) => name !== null);
    if (waiting.length === 0) return;
    if (Date.now() >= deadline) {
      throw new Error(
        `test services not answering after ${Math.round((options.timeoutMs ?? 120_000) / 1000)} s: ` +
          waiting
            .map(
              (name) =>
                `${name} at ${urls[`${name === "postgres" ? "database" : name}Url`]} (${problems[name]})`,
            )
            .join("; ") +
          ". Start them, or set DATABASE_URL / REDIS_URL / NATS_URL.",
      );
    }
    options.onWait?.(waiting);
    await new Promise((resolve) => setTimeout(resolve, options.pauseMs ?? 1000));
  }
}

/** Opens a socket, writes `hello` (if any), and resolves with what the server sent once `done(text)` says so. */
function exchange(url, defaultPort, hello, done, timeoutMs = 2000) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: hostname.replace(/^\[|\]$/g, ""), port: Number(port || defaultPort) });
    let received = Buffer.alloc(0);
    const finish = (error, value) => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(value);
    };
    const timer = setTimeout(() => finish(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs);
    socket.on("error", (error) => finish(error));
    socket.on("connect", () => {
      if (hello) socket.write(hello);
    });
    socket.on("data", (chunk) => {
      received = Buffer.concat([received, chunk]);
      try {
        const value = done(received);
        if (value !== undefined) finish(null, value);
      } catch (error) {
        finish(error);
      }
    });
    socket.on("close", () => finish(new Error("closed the connection without answering")));
  });
}

/** NATS greets with `INFO {…}`; the tests need JetStream on. */
function probeNats(url) {
  return exchange(url, 4222, null, (data) => {
    const text = data.toString("utf8");
    const end = text.indexOf("\r\n");
    if (end < 0) return undefined;
    if (!text.startsWith("INFO "))
      throw new Error(`not a NATS server (said ${JSON.stringify(text.slice(0, 40))})`);
    const info = JSON.parse(text.slice(5, end));
    if (!info.jetstream) throw new Error("JetStream is not enabled (start nats-server with -js)");
    return true;
  });
}

/** `PING` → `+PONG`; `-LOADING` (or an auth error) is not ready. */
function probeRedis(url) {
  const password = decodeURIComponent(new URL(url).password || "");
  const user = decodeURIComponent(new URL(url).username || "");
  const auth = password ? `AUTH ${user ? `${user} ` : ""}${password}\r\n` : "";
  return exchange(url, 6379, `${auth}PING\r\n`, (data) => {
    const text = data.toString("utf8");
    if (text.includes("+PONG")) return true;
    const error = text.match(/-([^\r\n]*)\r\n/);
    if (error) throw new Error(error[1]);
    return undefined;
  });
}

/**
 * A StartupMessage for the URL's user and database: `R` (authentication request / ok) means the server takes
 * connections; `E` carries the reason it does not yet ("the database system is starting up"). A database
 * that does not exist yet is fine: the tests create their own.
 */
function probePostgres(url) {
  const { username, pathname } = new URL(url);
  const user = decodeURIComponent(username || "postgres");
  const database = decodeURIComponent(pathname.replace(/^\//, "") || user);
  const params = Buffer.from(`user\0${user}\0database\0${database}\0\0`, "utf8");
  const startup = Buffer.alloc(8 + params.length);
  startup.writeInt32BE(startup.length, 0);
  startup.writeInt32BE(196608, 4); // protocol 3.0
  params.copy(startup, 8);
  return exchange(url, 5432, startup, (data) => {
    if (data.length < 5) return undefined;
    const kind = String.fromCharCode(data[0]);
    if (kind === "R") return true;
    if (kind !== "E") throw new Error(`not a PostgreSQL server (first byte ${JSON.stringify(kind)})`);
    const length = data.readInt32BE(1);
    if (data.length < length + 1) return undefined;
    const fields = data
      .subarray(5, length + 1)
      .toString("utf8")
      .split("\0");
    const code = fields.find((f) => f.startsWith("C"))?.slice(1);
    const message = fields.find((f) => f.startsWith("M"))?.slice(1) ?? "refused";
    if (code === "3D000") return true; // database does not exist (yet): the server itself is up
    throw new Error(message);
  });
}
