// Test support only (not exported from index.ts): the tests' stand-in for DNS.
import dns, { type LookupAddress } from "node:dns";
import { vi } from "vitest";

/** Makes dns.lookup answer `addresses` for any name, as if that were the name's DNS records. */
export const resolveEveryNameTo = (addresses: LookupAddress[]) =>
  vi
    .spyOn(dns, "lookup")
    .mockImplementation(((
      _host: string,
      _options: unknown,
      callback: (error: null, addresses: LookupAddress[]) => void,
    ) => callback(null, addresses)) as never);
