import dns, { type LookupAddress, type LookupOptions } from "node:dns";
import { isIPv4, isIPv6 } from "node:net";

/**
 * The SSRF policy for outbound webhook targets: a tenant chooses the URL we POST to, so without it a
 * webhook could reach our own network (databases, admin ports, the cloud metadata service).
 * `checkTargetUrl` judges the URL as written; `guardedLookup` judges every address a host name
 * resolves to, at connect time, so a name that resolves to a private address (or is re-pointed there
 * after registration: DNS rebinding) is refused too.
 */
export interface TargetPolicy {
  /** Tests and local development only: lets http:// and loopback/private targets through. */
  allowPrivateTargets: boolean;
}

export class TargetRefusedError extends Error {
  /** Readable and safe to show the endpoint's owner (API 400) or store with the attempt. */
  readonly reason: string;
  constructor(reason: string) {
    super(`webhook target refused: ${reason}`);
    this.name = "TargetRefusedError";
    this.reason = reason;
  }
}

// IPv4 ranges that are not publicly routable (IANA special-purpose registry, RFC 6890).
const IPV4_NON_PUBLIC = [
  { cidr: "0.0.0.0/8", kind: "this-network" },
  { cidr: "10.0.0.0/8", kind: "private" },
  { cidr: "100.64.0.0/10", kind: "carrier-grade NAT" },
  { cidr: "127.0.0.0/8", kind: "loopback" },
  { cidr: "169.254.0.0/16", kind: "link-local, incl. cloud metadata" },
  { cidr: "172.16.0.0/12", kind: "private" },
  { cidr: "192.0.0.0/24", kind: "IETF protocol assignments" },
  { cidr: "192.0.2.0/24", kind: "documentation" },
  { cidr: "192.88.99.0/24", kind: "6to4 relay anycast" },
  { cidr: "192.168.0.0/16", kind: "private" },
  { cidr: "198.18.0.0/15", kind: "benchmarking" },
  { cidr: "198.51.100.0/24", kind: "documentation" },
  { cidr: "203.0.113.0/24", kind: "documentation" },
  { cidr: "224.0.0.0/4", kind: "multicast" },
  { cidr: "240.0.0.0/4", kind: "reserved, incl. broadcast" },
].map(({ cidr, kind }) => {
  const [base, bits] = cidr.split("/");
  return { base: parseIPv4(base!)!, mask: ipv4Mask(Number(bits)), kind };
});

// IPv6 ranges that are not publicly routable. Anything outside 2000::/3 (global unicast) is refused
// anyway; the explicit entries give a better reason. NAT64 and IPv4-compatible are refused whole:
// a translator can reach private IPv4 space, and the compatible form is deprecated and unused.
const IPV6_NON_PUBLIC = [
  { cidr: "::/96", kind: "IPv4-compatible (deprecated)" },
  { cidr: "64:ff9b::/96", kind: "NAT64" },
  { cidr: "fc00::/7", kind: "unique local" },
  { cidr: "fe80::/10", kind: "link-local" },
  { cidr: "fec0::/10", kind: "site-local (deprecated)" },
  { cidr: "ff00::/8", kind: "multicast" },
  { cidr: "100::/64", kind: "discard-only" },
  { cidr: "64:ff9b:1::/48", kind: "local-use NAT64" },
  { cidr: "2001::/32", kind: "Teredo tunnel" },
  { cidr: "2001:db8::/32", kind: "documentation" },
  { cidr: "3fff::/20", kind: "documentation" },
].map(({ cidr, kind }) => {
  const [base, bits] = cidr.split("/");
  return { base: parseIPv6(base!)!, bits: Number(bits), kind };
});

// An IPv4-mapped address (::ffff:a.b.c.d) is a connection to a.b.c.d, so that address is judged.
const IPV4_MAPPED = parseIPv6("::ffff:0:0")!;

function ipv4Mask(bits: number): number {
  return bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
}

function parseIPv4(ip: string): number | null {
  if (!isIPv4(ip)) return null;
  return ip.split(".").reduce((value, octet) => value * 256 + Number(octet), 0);
}

function formatIPv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => (value >>> shift) & 0xff).join(".");
}

/** The 128-bit value of an IPv6 address (zone id ignored), or null if it is not one. */
function parseIPv6(ip: string): bigint | null {
  let text = ip.split("%")[0]!;
  if (!isIPv6(text)) return null;
  // A trailing dotted quad (::ffff:1.2.3.4) is the last two 16-bit groups.
  const dotted = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const v4 = parseIPv4(dotted[2]!);
    if (v4 === null) return null;
    text = `${dotted[1]}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const [head, tail] = text.split("::") as [string, string | undefined];
  const headGroups = head === "" ? [] : head.split(":");
  const tailGroups = tail === undefined || tail === "" ? [] : tail.split(":");
  const zeros = tail === undefined ? [] : Array(8 - headGroups.length - tailGroups.length).fill("0");
  const groups = [...headGroups, ...zeros, ...tailGroups];
  if (groups.length !== 8) return null;
  return groups.reduce((value, group) => (value << 16n) | BigInt(Number.parseInt(group, 16)), 0n);
}

function inIPv6Range(value: bigint, base: bigint, bits: number): boolean {
  const shift = BigInt(128 - bits);
  return value >> shift === base >> shift;
}

function ipv4NonPublicKind(value: number): string | null {
  return IPV4_NON_PUBLIC.find(({ base, mask }) => (value & mask) >>> 0 === base)?.kind ?? null;
}

/** Why an address is not public (e.g. "loopback"), or null when it is public. */
function nonPublicKind(ip: string): string | null {
  const v4 = parseIPv4(ip);
  if (v4 !== null) return ipv4NonPublicKind(v4);
  const v6 = parseIPv6(ip);
  if (v6 === null) return "not an IP address";
  if (v6 === 0n) return "unspecified";
  if (v6 === 1n) return "loopback";
  if (inIPv6Range(v6, IPV4_MAPPED, 96)) {
    const embedded = Number(v6 & 0xffffffffn);
    const kind = ipv4NonPublicKind(embedded);
    return kind === null ? null : `IPv4-mapped ${formatIPv4(embedded)}: ${kind}`;
  }
  const listed = IPV6_NON_PUBLIC.find(({ base, bits }) => inIPv6Range(v6, base, bits));
  if (listed) return listed.kind;
  // 6to4 (2002::/16) tunnels to the IPv4 address in bits 16..47.
  if (v6 >> 112n === 0x2002n) {
    const embedded = Number((v6 >> 80n) & 0xffffffffn);
    const kind = ipv4NonPublicKind(embedded);
    return kind === null ? null : `6to4 ${formatIPv4(embedded)}: ${kind}`;
  }
  if (v6 >> 125n !== 1n) return "not global unicast";
  return null;
}

/** True only for an address that is publicly routable; anything else (or not an IP) is false. */
export function isPublicAddress(ip: string): boolean {
  return nonPublicKind(ip) === null;
}

function addressRefusal(ip: string): string | null {
  const kind = nonPublicKind(ip);
  return kind === null ? null : `${ip} is a loopback/private address (${kind})`;
}

/**
 * The URL a delivery may be sent to, or TargetRefusedError. Checked when an endpoint is registered
 * (the reason becomes the API's 400) and again before every attempt (the policy may have changed).
 * Host names other than localhost are judged later, by `guardedLookup`, on the addresses they resolve to.
 */
export function checkTargetUrl(url: string, policy: TargetPolicy): URL {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    // Not echoing the input: it may carry credentials.
    throw new TargetRefusedError("not a URL");
  }
  if (target.protocol === "http:") {
    if (!policy.allowPrivateTargets) {
      throw new TargetRefusedError(
        "http:// targets are not allowed (https only; WEBHOOK_ALLOW_PRIVATE_TARGETS=true allows them for tests)",
      );
    }
  } else if (target.protocol !== "https:") {
    throw new TargetRefusedError(`${target.protocol}// targets are not allowed (https only)`);
  }
  if (target.username !== "" || target.password !== "") {
    throw new TargetRefusedError("credentials in the URL (user:pass@) are not allowed");
  }
  if (policy.allowPrivateTargets) return target;

  // WHATWG URL has already normalised odd IPv4 spellings (2130706433, 0x7f.1) to dotted decimal.
  const host = target.hostname.replace(/^\[(.*)\]$/, "$1");
  if (isIPv4(host) || isIPv6(host)) {
    const refusal = addressRefusal(host);
    if (refusal) throw new TargetRefusedError(refusal);
  }
  const name = host.toLowerCase().replace(/\.$/, "");
  if (name === "localhost" || name.endsWith(".localhost")) {
    throw new TargetRefusedError(`${host} is a loopback host name`);
  }
  return target;
}

type LookupCallback = (
  error: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

/**
 * A `lookup` for `http.request` / `https.request` that refuses the connection when ANY address the
 * name resolves to is not public: judging the address actually connected to is what defeats DNS
 * rebinding. (Node skips `lookup` for IP-literal hosts; `checkTargetUrl` judges those.)
 */
export function guardedLookup(policy: TargetPolicy) {
  return (hostname: string, options: LookupOptions, callback: LookupCallback): void => {
    dns.lookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error, []);
      if (addresses.length === 0) {
        const notFound: NodeJS.ErrnoException = new Error(`${hostname} has no address`);
        notFound.code = "ENOTFOUND";
        return callback(notFound, []);
      }
      if (!policy.allowPrivateTargets) {
        for (const { address } of addresses) {
          const refusal = addressRefusal(address);
          if (refusal) return callback(new TargetRefusedError(`${hostname} resolves to ${refusal}`), []);
        }
      }
      // Node asks for every address (options.all) when it races IPv4/IPv6 (autoSelectFamily).
      if (options.all) return callback(null, addresses);
      const first = addresses[0]!;
      callback(null, first.address, first.family);
    });
  };
}
