import type { Redis } from "ioredis";
import type { Logger } from "pino";

/** Every node failed or none is connected: callers treat it as "Redis is down". */
export class RedisUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "RedisUnavailableError";
  }
}

export interface FailoverOptions {
  /**
   * How long a node whose command failed on its connection (a timeout, say, while it still looks
   * connected) is passed over, so each command does not wait for it again. A node that reconnects is
   * used again at once.
   */
  cooldownMs?: number;
}

/** Commands that hold state on one connection, or end it: meaningless through a node that can change. */
const UNSUPPORTED = new Set([
  "subscribe",
  "psubscribe",
  "ssubscribe",
  "unsubscribe",
  "punsubscribe",
  "sunsubscribe",
  "monitor",
  "watch",
  "unwatch",
  "select",
  "quit",
  "client",
]);

const CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTCONN",
]);

/** Errors that say the node is unreachable, as opposed to a reply the node gave (which any node would give). */
export function isConnectionError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error.name === "MaxRetriesPerRequestError") return true;
  if (CONNECTION_CODES.has((error as NodeJS.ErrnoException).code ?? "")) return true;
  return /Connection is closed|Command timed out|Stream isn't writeable|^LOADING /.test(error.message);
}

type Callback = (err: Error | null, result?: unknown) => void;
type Send = (client: Redis) => Promise<unknown>;

/**
 * An ioredis-compatible client for state that is not a lock (rate schedules, caches, claims): each
 * command goes to the first node, in `REDIS_URL` order, that is connected, and on a connection error to
 * the next. Every replica walks the same order, so they all move to the same next node and shared state
 * stays shared; what was on a lost node is rebuilt there (rate windows restart, caches refill).
 *
 * Clients should fail fast (`connectRedisNodes` with `enableOfflineQueue: false`): a node that is down
 * must answer at once, not hold the command. Supports every plain command, `multi`/`pipeline` (replayed
 * whole on one node) and `defineCommand` (what rate-limiter-flexible uses); not pub/sub, `WATCH` or
 * connection management — the clients' owner closes them (`closeRedisNodes`).
 */
export function createFailoverRedis(clients: Redis[], log: Logger, options: FailoverOptions = {}): Redis {
  if (clients.length === 0) throw new Error("createFailoverRedis needs at least one Redis client");
  const cooldownMs = options.cooldownMs ?? 1000;
  const commands = new Set(clients[0]!.getBuiltinCommands());
  const passedOverUntil = clients.map(() => 0);
  let inUse = -1;

  for (const [node, client] of clients.entries()) {
    client.on("ready", () => {
      passedOverUntil[node] = 0;
    });
  }

  const isCommand = (name: string | symbol): name is string =>
    typeof name === "string" &&
    !UNSUPPORTED.has(name) &&
    (commands.has(name) || (name.endsWith("Buffer") && commands.has(name.slice(0, -6))));

  /** Connected nodes in `REDIS_URL` order; one recently failed goes last, not out. */
  const candidates = () => {
    const now = Date.now();
    const ready = clients.flatMap((c, node) => (c.status === "ready" ? [node] : []));
    return [
      ...ready.filter((n) => passedOverUntil[n]! <= now),
      ...ready.filter((n) => passedOverUntil[n]! > now),
    ];
  };

  const describe = () => clients.map((c, node) => `node ${node}: ${c.status}`).join(", ");

  const run = async (command: string, send: Send): Promise<unknown> => {
    const order = candidates();
    if (order.length === 0) throw new RedisUnavailableError(`no Redis node is connected (${describe()})`);
    let lastError: unknown;
    for (const node of order) {
      try {
        const result = await send(clients[node]!);
        if (node !== inUse) {
          if (inUse !== -1) log.warn({ node, previous: inUse }, "redis: now using another node");
          inUse = node;
        }
        return result;
      } catch (error) {
        if (!isConnectionError(error)) throw error;
        passedOverUntil[node] = Date.now() + cooldownMs;
        log.warn({ node, command, err: (error as Error).message }, "redis node failed, trying the next");
        lastError = error;
      }
    }
    throw new RedisUnavailableError(`every Redis node failed ${command} (${describe()})`, {
      cause: lastError,
    });
  };

  /** ioredis takes an optional trailing callback; it must see one answer, not one per node tried. */
  const withCallback = (args: unknown[], call: (args: unknown[]) => Promise<unknown>) => {
    const callback = typeof args.at(-1) === "function" ? (args.at(-1) as Callback) : undefined;
    const promise = call(callback ? args.slice(0, -1) : args);
    if (callback)
      promise.then(
        (r) => callback(null, r),
        (e: Error) => callback(e),
      );
    return promise;
  };

  const batch = (kind: "multi" | "pipeline", batchArgs: unknown[]) => {
    const queued: Array<[string, unknown[]]> = [];
    const builder: object = new Proxy(
      {},
      {
        get(_, name) {
          if (name === "exec")
            return (...args: unknown[]) =>
              withCallback(args, () =>
                run(kind, async (client) => {
                  const native = (client[kind] as unknown as (...a: unknown[]) => Record<string, unknown>)(
                    ...batchArgs,
                  );
                  for (const [command, commandArgs] of queued)
                    (native[command] as (...a: unknown[]) => unknown)(...commandArgs);
                  const results = (await (native.exec as () => Promise<unknown>)()) as Array<
                    [Error | null, unknown]
                  > | null;
                  // A pipeline reports a dropped connection per command instead of rejecting.
                  const dropped = results?.find(([err]) => isConnectionError(err))?.[0];
                  if (dropped) throw dropped;
                  return results;
                }),
              );
          if (name === "length") return queued.length;
          if (isCommand(name))
            return (...args: unknown[]) => {
              queued.push([name, args]);
              return builder;
            };
          return undefined;
        },
      },
    );
    return builder;
  };

  const own: Record<string, unknown> = {
    multi: (...args: unknown[]) => batch("multi", args),
    pipeline: (...args: unknown[]) => batch("pipeline", args),
    defineCommand(name: string, definition: { numberOfKeys?: number; lua: string }) {
      for (const client of clients) client.defineCommand(name, definition);
      commands.add(name);
    },
  };

  return new Proxy(own, {
    get(target, name) {
      // What readiness checks and rate-limiter-flexible read: connected while any node is.
      if (name === "status") return clients.some((c) => c.status === "ready") ? "ready" : clients[0]!.status;
      if (typeof name === "string" && Object.hasOwn(target, name)) return target[name];
      if (typeof name === "string" && UNSUPPORTED.has(name))
        return () => {
          throw new Error(`${name} is not supported by the failover Redis client`);
        };
      if (isCommand(name))
        return (...args: unknown[]) =>
          withCallback(args, (commandArgs) =>
            run(name, (client) =>
              (client[name as keyof Redis] as (...a: unknown[]) => Promise<unknown>).apply(
                client,
                commandArgs,
              ),
            ),
          );
      return Reflect.get(target, name);
    },
  }) as unknown as Redis;
}
