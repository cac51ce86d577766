/** One item's outcome in a batch: its own value or its own error (a batch never fails its items together). */
export type Settled<R> = { ok: true; value: R } | { ok: false; error: unknown };

export interface BatcherOptions<T, R> {
  /** Handles a batch; returns one outcome per item, in the items' order. */
  run: (items: T[]) => Promise<Array<Settled<R>>>;
  /** Items in one batch at most. */
  maxSize: number;
  /**
   * How long the first item of a batch waits for company while a batch slot is free. Items that arrive
   * while every slot is busy wait for a slot anyway and go together then.
   */
  maxWaitMs: number;
  /** Batches running at once (default 2: one is written while the next fills). */
  maxInFlight?: number;
}

export interface Batcher<T, R> {
  /** Resolves with the item's own outcome once its batch has run. */
  add(item: T): Promise<R>;
  /** Items waiting plus items in batches running. */
  size(): number;
}

/**
 * Gathers items handled one by one (a consumer's messages) into batches: what arrives within `maxWaitMs`,
 * or while earlier batches run, up to `maxSize`. Each caller still gets its own item's result or error.
 */
export function createBatcher<T, R>(options: BatcherOptions<T, R>): Batcher<T, R> {
  const maxInFlight = options.maxInFlight ?? 2;
  interface Waiting {
    item: T;
    resolve: (value: R) => void;
    reject: (error: unknown) => void;
  }
  let waiting: Waiting[] = [];
  let inFlight = 0;
  let running = 0;
  let timer: NodeJS.Timeout | undefined;

  const flush = () => {
    if (timer) {
      clearTimeout(timer);
      timer = undefined;
    }
    while (waiting.length > 0 && inFlight < maxInFlight) {
      const batch = waiting.slice(0, options.maxSize);
      waiting = waiting.slice(batch.length);
      inFlight++;
      running += batch.length;
      void runBatch(batch);
    }
  };

  const runBatch = async (batch: Waiting[]) => {
    try {
      const outcomes = await options
        .run(batch.map((w) => w.item))
        .catch((error: unknown) => batch.map((): Settled<R> => ({ ok: false, error })));
      batch.forEach((w, i) => {
        const outcome = outcomes[i];
        if (!outcome) w.reject(new Error("INVARIANT: batch returned fewer outcomes than items"));
        else if (outcome.ok) w.resolve(outcome.value);
        else w.reject(outcome.error);
      });
    } finally {
      inFlight--;
      running -= batch.length;
      // Whatever arrived meanwhile has waited long enough.
      if (waiting.length > 0) flush();
    }
  };

  return {
    add(item) {
      return new Promise<R>((resolve, reject) => {
        waiting.push({ item, resolve, reject });
        if (inFlight >= maxInFlight) return; // goes when a batch finishes
        if (waiting.length >= options.maxSize) flush();
        else timer ??= setTimeout(flush, Math.max(0, options.maxWaitMs));
      });
    },
    size: () => waiting.length + running,
  };
}
