import { randomUUID } from "node:crypto";
import { webhookSignature } from "@switchboard/contracts";
import type { TestBed } from "./bed";

/** What Meta sent and what the product queued during one scenario: the truth the checks compare with. */
export interface Ledger {
  /** Incoming mids Meta got a 200 for, with their page. */
  incoming: Map<string, string>;
  /** Messages queued through /v1 (202), in the order they were accepted, with their person. */
  sends: Array<{ id: string; pageId: string; psid: string }>;
  /** Signed POSTs that got a non-200 answer and were retried, as Meta retries. */
  webhookRetries: number;
  sendRetries: number;
}

export interface LoadOptions {
  /** Incoming messages per second, spread over the pages (with deliveries, reads and reactions beside). */
  messagesPerSecond: number;
  sendsPerSecond: number;
  seconds: number;
  /** A page that gets `floodPerSecond` more messages per second (the fair-share scenario)… */
  floodPageId?: string;
  floodPerSecond?: number;
  /** … while this says so (the fault window). */
  floodActive?: () => boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Sustained load as Meta and the product produce it: signed webhooks for every page (incoming messages,
 * and deliveries, reads and reactions on earlier ones) and sends through /v1, at once. Meta retries a POST
 * until it gets a 200 (the entry then counts as sent); the product retries a send with its Idempotency-Key.
 */
export async function runLoad(bed: TestBed, options: LoadOptions, ledger: Ledger): Promise<void> {
  const ingress = `${bed.system.urls.ingress}/webhooks/facebook`;
  const deadline = Date.now() + options.seconds * 1000;
  const inflight = new Set<Promise<void>>();
  const track = (task: Promise<void>) => {
    inflight.add(task);
    void task.finally(() => inflight.delete(task));
  };
  const recent: Array<{ pageId: string; psid: string; mid: string }> = [];
  let tick = 0;

  const postWebhook = async (pageId: string, messaging: unknown[]) => {
    const raw = JSON.stringify({ object: "page", entry: [{ id: pageId, time: Date.now(), messaging }] });
    const signature = webhookSignature(raw, bed.appSecret);
    for (let attempt = 0; ; attempt++) {
      const status = await fetch(ingress, {
        method: "POST",
        headers: { "content-type": "application/json", "x-hub-signature-256": signature },
        body: raw,
        signal: AbortSignal.timeout(10_000),
      })
        .then((r) => r.status)
        .catch(() => 0);
      if (status === 200) return;
      ledger.webhookRetries++;
      // Meta retries a failed delivery (with backoff; shortened here).
      await sleep(Math.min(5000, 250 * 2 ** attempt));
    }
  };

  const incoming = (pageId: string) => {
    const psids = bed.people.get(pageId)!;
    const psid = psids[Math.floor(Math.random() * psids.length)]!;
    const mid = `m_chaos_${randomUUID()}`;
    const item = {
      sender: { id: psid },
      recipient: { id: pageId },
      timestamp: Date.now(),
      message: { mid, text: `chaos ${mid}` },
    };
    track(
      postWebhook(pageId, [item]).then(() => {
        ledger.incoming.set(mid, pageId);
        recent.push({ pageId, psid, mid });
        if (recent.length > 500) recent.shift();
      }),
    );
  };

  const sideEvent = () => {
    const target = recent[Math.floor(Math.random() * recent.length)];
    if (!target) return;
    const now = Date.now();
    const base = { sender: { id: target.psid }, recipient: { id: target.pageId }, timestamp: now };
    const kind = tick % 3;
    const item =
      kind === 0
        ? { ...base, delivery: { mids: [], watermark: now } }
        : kind === 1
          ? { ...base, read: { watermark: now } }
          : { ...base, reaction: { mid: target.mid, action: "react", reaction: "love", emoji: "❤" } };
    track(postWebhook(target.pageId, [item]));
  };

  const send = (pageId: string, psid: string) => {
    const key = `chaos-${randomUUID()}`;
    track(
      (async () => {
        for (let attempt = 0; ; attempt++) {
          const urls = bed.apiUrls();
          const url = urls[attempt % Math.max(1, urls.length)];
          const answer = url
            ? await fetch(`${url}/v1/pages/${pageId}/conversations/${psid}/messages`, {
                method: "POST",
                headers: {
                  authorization: `Bearer ${bed.apiKey}`,
                  "content-type": "application/json",
                  "idempotency-key": key,
                },
                body: JSON.stringify({ text: `reply ${key}` }),
                signal: AbortSignal.timeout(10_000),
              })
                .then(async (r) => ({
                  status: r.status,
                  body: (await r.json().catch(() => ({}))) as { id?: string },
                }))
                .catch(() => ({ status: 0, body: {} as { id?: string } }))
            : { status: 0, body: {} as { id?: string } };
          if (answer.status === 202 && answer.body.id) {
            if (!ledger.sends.some((s) => s.id === answer.body.id))
              ledger.sends.push({ id: answer.body.id, pageId, psid });
            return;
          }
          ledger.sendRetries++;
          await sleep(Math.min(5000, 250 * 2 ** attempt));
        }
      })(),
    );
  };

  const intervalMs = 100;
  let messageCredit = 0;
  let sendCredit = 0;
  let floodCredit = 0;
  while (Date.now() < deadline) {
    tick++;
    messageCredit += (options.messagesPerSecond * intervalMs) / 1000;
    sendCredit += (options.sendsPerSecond * intervalMs) / 1000;
    if (options.floodActive?.() ?? true) floodCredit += ((options.floodPerSecond ?? 0) * intervalMs) / 1000;
    for (; messageCredit >= 1; messageCredit--) {
      incoming(bed.pageIds[Math.floor(Math.random() * bed.pageIds.length)]!);
      if (tick % 4 === 0) sideEvent();
    }
    for (; floodCredit >= 1 && options.floodPageId; floodCredit--) incoming(options.floodPageId);
    for (; sendCredit >= 1; sendCredit--) {
      const target = recent[Math.floor(Math.random() * recent.length)];
      if (target) send(target.pageId, target.psid);
    }
    await sleep(intervalMs);
  }
  // Meta keeps retrying what it has not delivered: wait for every delivery to be accepted.
  while (inflight.size > 0) await Promise.allSettled([...inflight]);
}

/** Queues `count` sends to one page's people at once (the broadcast scenario). */
export async function broadcast(bed: TestBed, pageId: string, count: number, ledger: Ledger) {
  const psids = bed.people.get(pageId)!;
  const url = () => bed.apiUrls()[0]!;
  for (let i = 0; i < count; i += 20) {
    await Promise.all(
      Array.from({ length: Math.min(20, count - i) }, async (_, j) => {
        const psid = psids[(i + j) % psids.length]!;
        const key = `broadcast-${randomUUID()}`;
        for (let attempt = 0; ; attempt++) {
          const r = await fetch(`${url()}/v1/pages/${pageId}/conversations/${psid}/messages`, {
            method: "POST",
            headers: {
              authorization: `Bearer ${bed.apiKey}`,
              "content-type": "application/json",
              "idempotency-key": key,
            },
            body: JSON.stringify({ text: `broadcast ${i + j}` }),
          }).catch(() => undefined);
          const body = (await r?.json().catch(() => ({}))) as { id?: string } | undefined;
          if (r?.status === 202 && body?.id) {
            ledger.sends.push({ id: body.id, pageId, psid });
            return;
          }
          await sleep(250 * 2 ** Math.min(attempt, 4));
        }
      }),
    );
  }
}
