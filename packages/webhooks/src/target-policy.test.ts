import type { LookupAddress } from "node:dns";
import { afterEach, describe, expect, it, vi } from "vitest";
import { resolveEveryNameTo } from "./dns-double";
import { checkTargetUrl, guardedLookup, isPublicAddress, TargetRefusedError } from "./target-policy";

const strict = { allowPrivateTargets: false };
const permissive = { allowPrivateTargets: true };

describe("isPublicAddress", () => {
  it.each([
    ["8.8.8.8", true],
    ["1.1.1.1", true],
    ["172.32.0.1", true],
    ["100.128.0.1", true],
    ["2606:4700::1111", true],
    ["2a00:1450:4001:82a::200e", true],
    ["::ffff:8.8.8.8", true],
    ["0.0.0.0", false],
    ["10.1.2.3", false],
    ["100.64.0.1", false],
    ["127.0.0.1", false],
    ["127.255.255.254", false],
    ["169.254.169.254", false],
    ["172.16.0.1", false],
    ["172.31.255.255", false],
    ["192.0.0.8", false],
    ["192.0.2.1", false],
    ["192.168.1.1", false],
    ["198.18.0.1", false],
    ["198.19.255.255", false],
    ["198.51.100.7", false],
    ["203.0.113.9", false],
    ["224.0.0.1", false],
    ["240.0.0.1", false],
    ["255.255.255.255", false],
    ["::", false],
    ["::1", false],
    ["fc00::1", false],
    ["fd00::1", false],
    ["fe80::1", false],
    ["fe80::1%eth0", false],
    ["ff02::1", false],
    ["2001:db8::1", false],
    ["64:ff9b::808:808", false],
    ["::ffff:127.0.0.1", false],
    ["::ffff:7f00:1", false],
    ["::ffff:169.254.169.254", false],
    ["::ffff:a9fe:a9fe", false],
    ["::ffff:10.0.0.1", false],
    ["::127.0.0.1", false],
    ["::8.8.8.8", false],
    ["2002:7f00:1::", false],
    ["not an address", false],
    ["", false],
  ])("%s → public %s", (ip, expected) => {
    expect(isPublicAddress(ip)).toBe(expected);
  });
});

describe("checkTargetUrl", () => {
  const refusal = (url: string, policy = strict) => {
    try {
      checkTargetUrl(url, policy);
    } catch (error) {
      expect(error).toBeInstanceOf(TargetRefusedError);
      return (error as TargetRefusedError).reason;
    }
    throw new Error(`${url} was accepted`);
  };

  it("accepts public https targets", () => {
    const url = checkTargetUrl("https://hooks.example.com/in?x=1", strict);
    expect(url.hostname).toBe("hooks.example.com");
    expect(checkTargetUrl("https://8.8.8.8/hook", strict).hostname).toBe("8.8.8.8");
    expect(checkTargetUrl("https://[2606:4700::1111]:8443/", strict).port).toBe("8443");
  });

  it("refuses what is not a URL, without echoing it", () => {
    expect(refusal("not a url")).toBe("not a URL");
    expect(refusal("https://user:s3cret@")).not.toContain("s3cret");
  });

  it("refuses http:// unless private targets are allowed", () => {
    expect(refusal("http://hooks.example.com/")).toBe(
      "http:// targets are not allowed (https only; WEBHOOK_ALLOW_PRIVATE_TARGETS=true allows them for tests)",
    );
    expect(checkTargetUrl("http://hooks.example.com/", permissive).protocol).toBe("http:");
  });

  it("refuses other schemes even when private targets are allowed", () => {
    expect(refusal("ftp://hooks.example.com/", permissive)).toContain("ftp://");
    expect(refusal("file:///etc/passwd", permissive)).toContain("file://");
  });

  it("refuses credentials in the URL, without echoing them", () => {
    const reason = refusal("https://admin:hunter2@hooks.example.com/");
    expect(reason).toContain("credentials");
    expect(reason).not.toContain("hunter2");
    expect(refusal("https://admin@hooks.example.com/", permissive)).toContain("credentials");
  });

  it.each([
    ["https://127.0.0.1/", "127.0.0.1 is a loopback/private address"],
    ["https://2130706433/", "127.0.0.1 is a loopback/private address"],
    ["https://0x7f.1/", "127.0.0.1 is a loopback/private address"],
    ["https://169.254.169.254/latest/meta-data/", "169.254.169.254 is a loopback/private address"],
    ["https://10.0.0.5:8443/", "10.0.0.5 is a loopback/private address"],
    ["https://[::1]/", "::1 is a loopback/private address"],
    ["https://[::ffff:127.0.0.1]/", "::ffff:7f00:1 is a loopback/private address"],
    ["https://[fd00::1]/", "fd00::1 is a loopback/private address"],
    ["https://localhost/", "localhost is a loopback host name"],
    ["https://LOCALHOST./", "localhost. is a loopback host name"],
    ["https://api.localhost:3000/", "api.localhost is a loopback host name"],
  ])("refuses %s", (url, reason) => {
    expect(refusal(url)).toContain(reason);
    expect(checkTargetUrl(url, permissive)).toBeInstanceOf(URL);
  });
});

type Lookup = ReturnType<typeof guardedLookup>;
const lookupAll = (lookup: Lookup, hostname: string) =>
  new Promise<LookupAddress[]>((resolve, reject) => {
    lookup(hostname, { all: true }, (error, addresses) =>
      error ? reject(error) : resolve(addresses as LookupAddress[]),
    );
  });
const lookupOne = (lookup: Lookup, hostname: string) =>
  new Promise<{ address: string; family: number | undefined }>((resolve, reject) => {
    lookup(hostname, {}, (error, address, family) =>
      error ? reject(error) : resolve({ address: address as string, family }),
    );
  });

describe("guardedLookup", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("refuses localhost (loopback addresses) unless private targets are allowed", async () => {
    await expect(lookupAll(guardedLookup(strict), "localhost")).rejects.toThrow(TargetRefusedError);
    await expect(lookupOne(guardedLookup(strict), "localhost")).rejects.toThrow(/loopback\/private/);

    const addresses = await lookupAll(guardedLookup(permissive), "localhost");
    expect(addresses.length).toBeGreaterThan(0);
    expect(addresses.every(({ address }) => !isPublicAddress(address))).toBe(true);
    const one = await lookupOne(guardedLookup(permissive), "localhost");
    expect(["127.0.0.1", "::1"]).toContain(one.address);
    expect([4, 6]).toContain(one.family);
  });

  it("refuses a name when ANY of its addresses is private (DNS rebinding)", async () => {
    const resolved = [
      { address: "8.8.8.8", family: 4 },
      { address: "10.0.0.7", family: 4 },
    ];
    resolveEveryNameTo(resolved);

    const refused = lookupAll(guardedLookup(strict), "hooks.example.com");
    await expect(refused).rejects.toThrow(TargetRefusedError);
    await expect(refused).rejects.toMatchObject({
      reason: "hooks.example.com resolves to 10.0.0.7 is a loopback/private address (private)",
    });
    await expect(lookupAll(guardedLookup(permissive), "hooks.example.com")).resolves.toEqual(resolved);
  });

  it("answers a single address when not asked for all, and passes public ones through", async () => {
    resolveEveryNameTo([
      { address: "2606:4700::1111", family: 6 },
      { address: "1.1.1.1", family: 4 },
    ]);
    await expect(lookupOne(guardedLookup(strict), "one.one.one.one")).resolves.toEqual({
      address: "2606:4700::1111",
      family: 6,
    });
  });
});
