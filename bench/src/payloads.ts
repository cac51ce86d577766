import { createHmac } from "node:crypto";
import { metaJson, RawNumber } from "@switchboard/fake-meta";

/** What users write: mostly short, often with accents, emoji and other scripts (Meta escapes them as \uXXXX). */
const TEXTS = [
  "Bonjour, la commande n°4512 est-elle partie ? Merci 🙏",
  "Hi! Do you ship to Zürich?",
  "¿Tienen esta talla en azul? 👟",
  "お問い合わせありがとうございます。在庫はありますか？",
  "Привет! Когда будет доставка?",
  "ok 👍",
  "مرحبا، هل المتجر مفتوح اليوم؟",
  "Can I change the address to 12/3 Rue de l'Église, Montréal?",
  "Xin chào, giá bao nhiêu vậy ạ? 😊",
  "Danke schön — bis morgen!",
];

export interface SignedBody {
  raw: string;
  signature: string;
  /** Text messages (one stored row each) in this body. */
  messages: number;
}

export function sign(raw: string, appSecret: string): string {
  return `sha256=${createHmac("sha256", appSecret).update(raw).digest("hex")}`;
}

export interface BodyShape {
  /** Page of each entry. */
  pageIds: string[];
  /** User of each message: with one psid per page, every message lands in the same conversation. */
  psidFor: (pageId: string, entryIndex: number) => string;
  /** Unique per message, so every message is a new row. */
  mid: (entryIndex: number) => string;
  timestamp: number;
  /** Add an echo of one of our sends with a long `app_id` (unquoted, beyond 2^53, as Meta sends it). */
  withEcho?: boolean;
  /** Serialise as Meta does (\uXXXX, \/); otherwise plain UTF-8 JSON. */
  metaEscaping: boolean;
  textIndex: number;
}

/** One webhook POST body with one text message per entry (plus an optional echo), signed. */
export function webhookBody(shape: BodyShape, appSecret: string): SignedBody {
  const entry = shape.pageIds.map((pageId, i) => {
    const psid = shape.psidFor(pageId, i);
    const messaging: unknown[] = [
      {
        sender: { id: psid },
        recipient: { id: pageId },
        timestamp: shape.timestamp,
        message: { mid: shape.mid(i), text: TEXTS[(shape.textIndex + i) % TEXTS.length] },
      },
    ];
    if (shape.withEcho && i === 0) {
      messaging.push({
        sender: { id: pageId },
        recipient: { id: psid },
        timestamp: shape.timestamp,
        message: {
          is_echo: true,
          app_id: new RawNumber("1234567890123456789"),
          mid: `${shape.mid(i)}_echo`,
          text: "Merci ! Votre colis part demain 📦",
          metadata: "bench",
        },
      });
    }
    return { id: pageId, time: shape.timestamp, messaging };
  });
  const body = { object: "page", entry };
  const raw = shape.metaEscaping ? metaJson(body) : JSON.stringify(body).replace(/"\\u0000raw:(\d+)"/g, "$1");
  return { raw, signature: sign(raw, appSecret), messages: entry.length };
}

/**
 * A pool of distinct realistic bodies for throughput runs: 1–5 entries each, over `pages` pages,
 * half escaped as Meta does and half plain UTF-8, some with a long-id echo.
 */
export function bodyPool(count: number, pages: string[], appSecret: string, runId: string): SignedBody[] {
  const pool: SignedBody[] = [];
  const now = Date.now();
  for (let n = 0; n < count; n++) {
    const entries = 1 + (n % 5);
    const pageIds = Array.from({ length: entries }, (_, i) => pages[(n * 5 + i) % pages.length]!);
    pool.push(
      webhookBody(
        {
          pageIds,
          psidFor: (_pageId, i) => `${7_000_000_000_000_000 + ((n * 7 + i) % 500)}`,
          mid: (i) => `m_${runId}_${n}_${i}`,
          timestamp: now,
          withEcho: n % 4 === 3,
          metaEscaping: n % 2 === 0,
          textIndex: n,
        },
        appSecret,
      ),
    );
  }
  return pool;
}
