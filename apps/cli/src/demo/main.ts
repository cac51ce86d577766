import { env, loadConfig } from "@switchboard/config";
import { z } from "zod";
import {
  CheckFailed,
  check,
  type DemoPage,
  fake,
  INSTAGRAM,
  masked,
  metricSum,
  PAGES,
  waitFor,
} from "./checklist";
import { type DemoSystem, startDemoSystem } from "./system";

/**
 * `pnpm demo`: the seed's testing checklist, end to end, against the fake Meta — connect two pages,
 * check subscriptions, send to both pages within one minute, check for duplicates, fetch profiles for
 * both, send from the app to both — then an Instagram account beside them. Each step prints ✓ or ✗ with its evidence; any ✗ exits non-zero.
 */
const stores = loadConfig(
  z.object({
    DATABASE_URL: env.databaseUrl(),
    REDIS_URL: z.string().default("redis://127.0.0.1:6379"),
    NATS_URL: z.string().default("nats://127.0.0.1:4222"),
  }),
);

type Step = { title: string; run: (system: DemoSystem) => Promise<string[]> };

interface GraphCall {
  method: string;
  path: string;
  endpoint: string;
  pageId?: string;
  psid?: string;
  token?: string;
  appsecretProofValid: boolean;
}

const byPage = (pageId: string) => PAGES.find((p) => p.pageId === pageId)!;

const steps: Step[] = [
  {
    title: "connect two pages (pnpm sb pages connect, token on stdin)",
    async run(system) {
      const evidence: string[] = [];
      for (const page of PAGES) {
        await fake(system, "/pages", { pageId: page.pageId, token: page.token, name: page.name });
        for (const person of page.people) await fake(system, "/users", { pageId: page.pageId, ...person });
        const out = await system.cli(
          ["pages", "connect", "--page-id", page.pageId, "--name", page.name, "--company", page.company],
          page.token,
        );
        check(out.code === 0, `sb pages connect ${page.pageId} exited ${out.code}`, [out.stderr.trim()]);
        evidence.push(`$ sb pages connect --page-id ${page.pageId} … → ${out.stdout.trim()}`);
      }
      const rows = await system.db.pageConnection.findMany({ orderBy: { pageId: "asc" } });
      check(rows.length === 2 && rows.every((r) => r.status === "active"), "two active page connections", [
        JSON.stringify(rows.map((r) => [r.pageId, r.status])),
      ]);
      for (const row of rows) {
        check(
          !row.pageAccessTokenEnc.includes(byPage(row.pageId).token),
          `page ${row.pageId}'s token stored in clear`,
        );
        evidence.push(
          `page_connections: ${row.pageId} "${row.name}" company=${row.companyId} status=${row.status}, token encrypted (${row.pageAccessTokenEnc.length} chars, not the token)`,
        );
      }
      return evidence;
    },
  },
  {
    title: "check subscriptions (each page on its own /{page-id}/subscribed_apps, with its own token)",
    async run(system) {
      await waitFor(
        async () => (await system.db.pageSubscription.count({ where: { status: "subscribed" } })) === 2,
        "the subscription-service to subscribe both pages",
      );
      const out = await system.cli(["subscriptions", "check", "--json"]);
      const rows = JSON.parse(out.stdout) as Array<{ page: string; subscribed: boolean; fields: string[] }>;
      check(out.code === 0, `sb subscriptions check exited ${out.code}`, [out.stdout, out.stderr]);
      const evidence = rows.map(
        (r) =>
          `$ sb subscriptions check → ${r.page}: subscribed=${r.subscribed}, fields=${r.fields.join(",")}`,
      );
      for (const page of PAGES) {
        const calls = await fake<GraphCall[]>(
          system,
          `/calls?pageId=${page.pageId}&endpoint=subscribed_apps`,
        );
        const posts = calls.filter((c) => c.method === "POST");
        check(posts.length >= 1, `no POST /${page.pageId}/subscribed_apps`);
        check(
          calls.every((c) => c.token === page.token && c.appsecretProofValid),
          `a subscribed_apps call for ${page.pageId} used another token or a bad appsecret_proof`,
        );
        evidence.push(
          `fake Meta: ${posts.length} POST + ${calls.length - posts.length} GET /${page.pageId}/subscribed_apps, all with ${masked(page.token)} and a valid appsecret_proof`,
        );
      }
      return evidence;
    },
  },
  {
    title:
      "send to both pages within one minute (12 messages from 4 people, 2 of the webhooks delivered twice)",
    async run(system) {
      const entries = PAGES.flatMap((page) =>
        page.people.flatMap((person, p) =>
          [1, 2, 3].map((n) => ({
            page,
            person,
            mid: `m_demo_${page.pageId.slice(-1)}_${p + 1}_${n}`,
            text: `hello #${n} from ${person.firstName}`,
          })),
        ),
      );
      // Interleaved across pages, as Meta delivers them.
      entries.sort((a, b) => a.mid.slice(-1).localeCompare(b.mid.slice(-1)) || a.mid.localeCompare(b.mid));
      const started = Date.now();
      const statuses: number[] = [];
      const deliver = async (entry: (typeof entries)[number], timestamp: number) => {
        const result = await fake<{ status: number }>(system, "/webhooks", {
          entries: [
            {
              id: entry.page.pageId,
              time: timestamp,
              messaging: [
                {
                  sender: { id: entry.person.psid },
                  recipient: { id: entry.page.pageId },
                  timestamp,
                  message: { mid: entry.mid, text: entry.text },
                },
              ],
            },
          ],
        });
        statuses.push(result.status);
      };
      const timestamps = new Map<string, number>();
      for (const entry of entries) {
        timestamps.set(entry.mid, Date.now());
        await deliver(entry, timestamps.get(entry.mid)!);
      }
      // Meta retries a delivery it thinks failed: the same entries again.
      for (const entry of entries.slice(0, 2)) await deliver(entry, timestamps.get(entry.mid)!);
      const sentWithin = Date.now() - started;
      check(sentWithin < 60_000, `sending took ${sentWithin} ms`);
      check(
        statuses.every((s) => s === 200),
        "every webhook answered 200",
        [statuses.join(",")],
      );
      await waitFor(
        async () => (await system.db.message.count({ where: { direction: "incoming" } })) >= entries.length,
        "all 12 messages stored",
      );
      const evidence = [
        `fake Meta → ingress: ${statuses.length} signed webhooks (12 + 2 repeats) in ${sentWithin} ms, all answered 200`,
      ];
      for (const page of PAGES) {
        const rows = await system.db.message.findMany({
          where: { pageId: page.pageId },
          orderBy: { sentAt: "asc" },
        });
        evidence.push(
          `messages: page ${page.pageId} has ${rows.length} rows (${rows.map((r) => r.mid).join(", ")})`,
        );
        check(rows.length === 6, `page ${page.pageId} has ${rows.length} messages, expected 6`);
      }
      return evidence;
    },
  },
  {
    title:
      "check for duplicates (each mid stored once per page, one contact and one conversation per person)",
    async run(system) {
      const duplicates = await system.db.$queryRaw<Array<{ page_id: string; mid: string; n: bigint }>>`
        SELECT page_id, mid, count(*) AS n FROM messages GROUP BY page_id, mid HAVING count(*) > 1`;
      const messages = await system.db.message.count();
      const contacts = await system.db.contact.count();
      const conversations = await system.db.conversation.count();
      const repeats = metricSum(
        await system.metrics("ingress"),
        "switchboard_webhook_entries_duplicate_total",
      );
      check(
        duplicates.length === 0,
        "duplicate messages",
        duplicates.map((d) => `${d.page_id} ${d.mid} ×${d.n}`),
      );
      check(messages === 12, `${messages} messages for 12 distinct mids`);
      check(
        contacts === 4 && conversations === 4,
        `${contacts} contacts, ${conversations} conversations for 4 people`,
      );
      return [
        "SELECT page_id, mid, count(*) … HAVING count(*) > 1 → 0 rows",
        `14 deliveries → ${messages} message rows, ${contacts} contacts, ${conversations} conversations`,
        `ingress: JetStream recognised ${repeats} repeated entries by their Nats-Msg-Id (switchboard_webhook_entries_duplicate_total)`,
      ];
    },
  },
  {
    title: "fetch profiles for both pages (with each page's own token)",
    async run(system) {
      const evidence: string[] = [];
      for (const page of PAGES) {
        const contacts = await waitFor(async () => {
          const rows = await system.db.contact.findMany({
            where: { pageId: page.pageId },
            orderBy: { psid: "asc" },
          });
          return rows.length === page.people.length && rows.every((r) => r.firstName) && rows;
        }, `profiles of page ${page.pageId}'s contacts`);
        for (const person of page.people) {
          const contact = contacts.find((c) => c.psid === person.psid);
          check(
            contact?.firstName === person.firstName && contact.lastName === person.lastName,
            `contact ${person.psid} of ${page.pageId} is ${contact?.firstName} ${contact?.lastName}`,
          );
          evidence.push(
            `contacts: ${page.pageId}/${person.psid} = ${contact!.firstName} ${contact!.lastName}`,
          );
        }
        const calls = await fake<GraphCall[]>(system, `/calls?pageId=${page.pageId}&endpoint=profile`);
        check(calls.length >= page.people.length, `${calls.length} profile calls for page ${page.pageId}`);
        check(
          calls.every((c) => c.token === page.token && c.appsecretProofValid),
          `a profile call for page ${page.pageId} used another page's token`,
        );
        evidence.push(
          `fake Meta: ${calls.length} GET /{psid} profile calls for ${page.pageId}, all with ${masked(page.token)}`,
        );
      }
      return evidence;
    },
  },
  {
    title: "send from the app to both pages' customers (pnpm sb messages send → send worker → Send API)",
    async run(system) {
      const evidence: string[] = [];
      const sends: Array<{ page: DemoPage; id: string }> = [];
      for (const page of PAGES) {
        const person = page.people[0]!;
        const out = await system.cli([
          "messages",
          "send",
          "--page-id",
          page.pageId,
          "--psid",
          person.psid,
          "--text",
          `Thanks ${person.firstName}, your order from ${page.name} ships today`,
          "--idempotency-key",
          `demo-${page.pageId}`,
        ]);
        check(out.code === 0, `sb messages send for ${page.pageId} exited ${out.code}`, [out.stderr.trim()]);
        sends.push({ page, id: out.stdout.trim() });
        evidence.push(
          `$ sb messages send --page-id ${page.pageId} --psid ${person.psid} … → ${out.stdout.trim()}`,
        );
      }
      for (const { page, id } of sends) {
        const row = await waitFor(async () => {
          const message = await system.db.message.findUnique({ where: { id } });
          const done =
            message &&
            (message.status === "failed" || (message.mid !== null && message.status !== "sending"));
          return done ? message : undefined;
        }, `message ${id} sent`);
        check(row.status !== "failed", `message ${id} failed: ${row.error}`);
        const calls = await fake<GraphCall[]>(system, `/calls?pageId=${page.pageId}&endpoint=messages`);
        check(
          calls.length >= 1 && calls.every((c) => c.token === page.token && c.appsecretProofValid),
          `Send API calls for ${page.pageId} with the wrong token`,
        );
        evidence.push(
          `messages: ${id} page=${page.pageId} status=${row.status} mid=${row.mid}; Send API called with ${masked(page.token)}`,
        );
      }
      // Meta echoes each sent message back as a webhook: it must match our row, not add one.
      await waitFor(async () => {
        const deliveries = await fake<Array<{ body: string; status?: number }>>(system, "/webhooks");
        return deliveries.filter((d) => d.body.includes('"is_echo":true') && d.status === 200).length >= 2;
      }, "both echoes delivered");
      await new Promise((r) => setTimeout(r, 1500));
      for (const page of PAGES) {
        const outgoing = await system.db.message.count({
          where: { pageId: page.pageId, direction: "outgoing" },
        });
        check(outgoing === 1, `page ${page.pageId} has ${outgoing} outgoing rows after its echo, expected 1`);
      }
      evidence.push("echoes from Meta matched the sent rows: 1 outgoing row per page");
      return evidence;
    },
  },
  {
    title:
      "an Instagram account beside the two pages: connect, a DM, an unsend, a reaction, a reply (sb messages send) and its seen",
    async run(system) {
      const ig = INSTAGRAM;
      const evidence: string[] = [];
      await fake(system, "/pages", {
        pageId: ig.pageId,
        token: ig.token,
        name: ig.name,
        platform: "instagram",
      });
      await fake(system, "/users", { pageId: ig.pageId, ...ig.person });
      const out = await system.cli(
        [
          "pages",
          "connect",
          "--platform",
          "instagram",
          "--page-id",
          ig.pageId,
          "--name",
          ig.name,
          "--company",
          ig.company,
        ],
        ig.token,
      );
      check(out.code === 0, `sb pages connect --platform instagram exited ${out.code}`, [out.stderr.trim()]);
      evidence.push(
        `$ sb pages connect --platform instagram --page-id ${ig.pageId} … → ${out.stdout.trim()}`,
      );
      await waitFor(
        async () =>
          (await system.db.pageSubscription.findUnique({ where: { pageId: ig.pageId } }))?.status ===
          "subscribed",
        "the subscription-service to subscribe the Instagram account",
      );
      const subscribe = await fake<Array<GraphCall & { host: string }>>(
        system,
        `/calls?pageId=${ig.pageId}&endpoint=subscribed_apps`,
      );
      check(
        subscribe.length > 0 && subscribe.every((c) => c.host === "instagram" && c.token === ig.token),
        "the Instagram account was subscribed on another host or with another token",
      );
      evidence.push(
        `fake Meta: ${subscribe.map((c) => `${c.method} ${c.path}`).join(", ")} on the Instagram API, with ${masked(ig.token)}`,
      );

      const person = ig.person.psid;
      const instagramWebhook = (messaging: unknown[]) =>
        fake<{ status: number }>(system, "/webhooks", {
          object: "instagram",
          entries: [{ id: ig.pageId, time: Date.now(), messaging }],
        });
      const at = Date.now();
      const from = (extra: Record<string, unknown>, timestamp = Date.now()) => ({
        sender: { id: person },
        recipient: { id: ig.pageId },
        timestamp,
        ...extra,
      });
      await instagramWebhook([
        from({ message: { mid: "aWdf_demo_1", text: "Do you have these in red?" } }, at),
        from({ message: { mid: "aWdf_demo_2", text: "oops, wrong photo" } }, at + 1),
      ]);
      await instagramWebhook([
        from({ message: { mid: "aWdf_demo_2", is_deleted: true } }),
        from({ reaction: { mid: "aWdf_demo_1", action: "react", reaction: "love", emoji: "❤" } }),
      ]);
      const rows = await waitFor(async () => {
        const found = await system.db.message.findMany({
          where: { pageId: ig.pageId, direction: "incoming" },
        });
        return found.length === 2 && found.some((m) => m.deletedAt !== null) ? found : undefined;
      }, "both Instagram messages stored, one unsent");
      check(
        rows.every((r) => r.platform === "instagram"),
        "Instagram rows without platform instagram",
      );
      const contact = await system.db.contact.findFirstOrThrow({
        where: { pageId: ig.pageId, psid: person },
      });
      evidence.push(
        `messages: 2 incoming, platform=instagram; aWdf_demo_2 unsent (deleted_at set, text ${rows.find((r) => r.mid === "aWdf_demo_2")?.text === null ? "cleared" : "KEPT"}); contact ${contact.name} @${contact.username} from the Instagram API`,
      );
      await waitFor(
        async () => (await system.db.messageReaction.count({ where: { pageId: ig.pageId } })) === 1,
        "the reaction stored",
      );
      evidence.push("message_reactions: ❤ on aWdf_demo_1");

      const sent = await system.cli([
        "messages",
        "send",
        "--page-id",
        ig.pageId,
        "--psid",
        person,
        "--text",
        "Yes, in red too: sizes 36 to 42",
        "--idempotency-key",
        "demo-instagram",
      ]);
      check(sent.code === 0, `sb messages send for the Instagram account exited ${sent.code}`, [
        sent.stderr.trim(),
      ]);
      const id = sent.stdout.trim();
      const reply = await waitFor(async () => {
        const message = await system.db.message.findUnique({ where: { id } });
        return message && message.mid !== null && message.status !== "sending" ? message : undefined;
      }, "the Instagram reply sent");
      const sendCalls = await fake<Array<GraphCall & { host: string }>>(
        system,
        `/calls?pageId=${ig.pageId}&endpoint=messages`,
      );
      check(
        sendCalls.length === 1 && sendCalls[0]!.host === "instagram",
        `expected one Send API call on the Instagram API, got ${sendCalls.length}`,
      );
      await new Promise((r) => setTimeout(r, 1500));
      const outgoing = await system.db.message.count({ where: { pageId: ig.pageId, direction: "outgoing" } });
      check(outgoing === 1, `the Instagram account has ${outgoing} outgoing rows after its echo, expected 1`);
      evidence.push(
        `$ sb messages send --page-id ${ig.pageId} … → ${id}: sent once through the Instagram API, mid=${reply.mid}; its echo (no metadata) matched: 1 outgoing row`,
      );
      await instagramWebhook([from({ read: { mid: reply.mid } })]);
      await waitFor(
        async () => (await system.db.message.findUnique({ where: { id } }))?.status === "read",
        "the reply marked read by Instagram's seen",
      );
      evidence.push(`seen (read.mid=${reply.mid}) → the reply is read`);
      return evidence;
    },
  },
];

async function main() {
  console.log("Switchboard demo: the seed's testing checklist against the fake Meta\n");
  const system = await startDemoSystem(stores);
  console.log(
    `system: ${Object.entries(system.urls)
      .map(([name, url]) => `${name} ${url}`)
      .join(
        ", ",
      )}\n        (database ${new URL(system.env.DATABASE_URL!).pathname.slice(1)}, bus namespace ${system.env.BUS_NAMESPACE})\n`,
  );
  let failed = 0;
  try {
    for (const [index, step] of steps.entries()) {
      const started = Date.now();
      try {
        const evidence = await step.run(system);
        console.log(`✓ ${index + 1}. ${step.title} (${Date.now() - started} ms)`);
        for (const line of evidence) console.log(`    ${line}`);
      } catch (error) {
        failed++;
        console.log(`✗ ${index + 1}. ${step.title}`);
        console.log(`    ${(error as Error).message}`);
        if (error instanceof CheckFailed) for (const line of error.evidence) console.log(`    ${line}`);
      }
    }
  } finally {
    await system.stop();
  }
  console.log(`\n${steps.length - failed}/${steps.length} checks passed`);
  process.exitCode = failed > 0 ? 1 : 0;
}

main().catch((error: unknown) => {
  console.error(`✗ the demo could not run: ${(error as Error).message}`);
  process.exitCode = 1;
});
