import { type ObjectStore, Objm } from "@nats-io/obj";
import { type Bus, header, isNotFound, type JsMsg, PermanentError } from "@switchboard/bus";
import { Headers } from "@switchboard/contracts";

/**
 * The bytes of a webhook entry: the message's own, or, for an entry larger than the broker's max
 * payload, the object the ingress stored in the large-entries bucket (named by `Sb-Entry-Ref`). The
 * reference travels in the headers, so an entry parked, dead-lettered and replayed is resolved the same.
 */
export function createEntryReader(bus: Bus) {
  const name = bus.topology.buckets.largeEntries;
  let bucket: Promise<ObjectStore> | undefined;
  const largeEntries = () => {
    bucket ??= new Objm(bus.js).open(name).catch((error: unknown) => {
      bucket = undefined;
      if (isNotFound(error)) throw new PermanentError(`the ${name} bucket does not exist`, { cause: error });
      throw error;
    });
    return bucket;
  };

  return async function entryData(msg: JsMsg): Promise<Uint8Array> {
    const ref = header(msg.headers, Headers.entryRef);
    if (!ref) return msg.data;
    const data = await (await largeEntries()).getBlob(ref);
    // Past the bucket's TTL (or purged): retrying cannot bring it back; the dead letter keeps the reference.
    if (!data) throw new PermanentError(`large entry ${ref} is no longer stored in ${name}`);
    return data;
  };
}
