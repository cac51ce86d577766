/**
 * Gathers the calls made within one turn of the event loop and hands them to `run` together: one Redis
 * round trip (and one write) for what many entries routed side by side ask, instead of one each. Each
 * caller gets its own answer (or the batch's error).
 */
export function coalescePerTick<In, Out>(run: (inputs: In[]) => Promise<Out[]>): (input: In) => Promise<Out> {
  let pending: Array<{ input: In; resolve: (out: Out) => void; reject: (error: unknown) => void }> = [];
  const flush = () => {
    const batch = pending;
    pending = [];
    run(batch.map((p) => p.input)).then(
      (outs) => {
        for (const [i, p] of batch.entries()) p.resolve(outs[i] as Out);
      },
      (error: unknown) => {
        for (const p of batch) p.reject(error);
      },
    );
  };
  return (input) =>
    new Promise<Out>((resolve, reject) => {
      if (pending.length === 0) setImmediate(flush);
      pending.push({ input, resolve, reject });
    });
}
