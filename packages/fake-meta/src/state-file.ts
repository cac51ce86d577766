import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { z } from "zod";
import { type FakeMetaState, fakeUser, type Registrations } from "./state";

/**
 * The fake Meta's registrations on disk (`FAKE_META_STATE_FILE`), so a `pnpm dev` restart does not forget the
 * pages and people PostgreSQL still has (their connections would turn `reauthorization_required`).
 */
const StateFile = z.object({
  version: z.literal(1),
  pages: z.array(
    z.object({
      pageId: z.string(),
      token: z.string(),
      name: z.string(),
      // Files saved before Instagram accounts existed hold Messenger pages only.
      platform: z.enum(["messenger", "instagram"]).default("messenger"),
      username: z.string().optional(),
      subscribedFields: z.array(z.string()).optional(),
      usagePercent: z.number(),
    }),
  ),
  tokens: z.array(
    z.object({ token: z.string(), pageId: z.string(), status: z.enum(["valid", "revoked", "replaced"]) }),
  ),
  users: z.array(
    z
      .object({
        pageId: z.string(),
        psid: z.string(),
        firstName: z.string(),
        lastName: z.string(),
        profilePic: z.string(),
        // Not in files saved before the Instagram profile fields: the defaults, as for a new person.
        name: z.string().optional(),
        username: z.string().optional(),
      })
      .transform(fakeUser),
  ),
});

export class StateFileError extends Error {
  constructor(
    readonly path: string,
    cause: unknown,
  ) {
    super(
      `fake-meta: cannot load the state file ${path} (${(cause as Error).message}); ` +
        "delete it or run `pnpm fake-meta:reset`",
      { cause },
    );
    this.name = "StateFileError";
  }
}

/** The registrations saved in `path`, or undefined when there is no such file yet. */
export function loadStateFile(path: string): Registrations | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new StateFileError(path, error);
  }
  try {
    const { version: _version, ...registrations } = StateFile.parse(JSON.parse(text));
    return registrations;
  } catch (error) {
    throw new StateFileError(path, error);
  }
}

/** Writes through a temporary file and a rename, so a crash mid-write never leaves half a file. */
export function saveStateFile(path: string, registrations: Registrations): void {
  mkdirSync(dirname(path), { recursive: true });
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify({ version: 1, ...registrations }, null, 2)}\n`);
  renameSync(temporary, path);
}

export interface StatePersistence {
  /** Writes a pending change now (at shutdown, or in a test). */
  flush(): void;
  /** Flushes and stops listening. */
  close(): void;
}

/**
 * Loads `path` into `state` (when the file exists), then saves the registrations after each change,
 * debounced: a burst of registrations (a bench adding 1,000 people) is one write.
 */
export function persistState(
  state: FakeMetaState,
  path: string,
  { debounceMs = 200 }: { debounceMs?: number } = {},
): StatePersistence {
  const saved = loadStateFile(path);
  if (saved) state.restoreRegistrations(saved);
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const flush = () => {
    if (!timer) return;
    clearTimeout(timer);
    timer = undefined;
    saveStateFile(path, state.registrations());
  };
  state.onRegistrationChange(() => {
    if (closed || timer) return;
    timer = setTimeout(flush, debounceMs);
    timer.unref();
  });
  return {
    flush,
    close() {
      flush();
      closed = true;
    },
  };
}
