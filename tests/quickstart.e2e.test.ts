import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type CliResult, repoRoot, runProcess } from "@switchboard/local-system";
import { eventually } from "@switchboard/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPERATOR_TOKEN, type RunningConsole, startConsole } from "./console-process";
import { type System, startSystem } from "./harness";

/**
 * docs/quickstart.md as a newcomer runs it: its ```sh quickstart blocks, in order, with bash, on a system of
 * the test's own. Only the doc's variables (URLs, tokens, set in its first block with the dev defaults) and
 * `pnpm -s sb` (the built CLI here, as `system.cli` runs it) differ from what the reader pastes.
 */
const DOC = join(repoRoot, "docs/quickstart.md");
const CLI = `node '${join(repoRoot, "apps/cli/dist/main.js")}'`;

interface QuickstartStep {
  name: string;
  /** Only reads: re-run until its outcome is there, as the doc tells the reader. */
  retry: boolean;
  script: string;
}

function quickstartSteps(markdown: string): QuickstartStep[] {
  const blocks = markdown.matchAll(/^```sh quickstart step=(\S+)( retry)?\n([\s\S]*?)^```$/gm);
  return [...blocks].map(([, name, retry, script]) => ({
    name: name as string,
    retry: retry !== undefined,
    script: script as string,
  }));
}

const SHOES = {
  pageId: "110000000000001",
  name: "Acme Shoes",
  token: "page-token-shoes",
  psid: "7100000000000001",
};
const HATS = {
  pageId: "110000000000002",
  name: "Acme Hats",
  token: "page-token-hats",
  psid: "7100000000000002",
};
const PAGES = [SHOES, HATS];
const INSTAGRAM = {
  pageId: "17841400000000003",
  name: "Acme on Instagram",
  token: "IGAA-quickstart-acme",
  psid: "9100000000000003",
};
const EVERY_PAGE = [SHOES, HATS, INSTAGRAM];
const everyPageId = EVERY_PAGE.map((p) => p.pageId).sort();

type StepRun = CliResult;

interface EchoItem {
  timestamp: number;
  message: { is_echo?: boolean; mid: string; metadata?: string };
}

const jsonLines = (stdout: string) =>
  stdout
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line));

describe("docs/quickstart.md, run as written on a system of its own", () => {
  const steps = quickstartSteps(readFileSync(DOC, "utf8"));
  let system: System;
  let operatorConsole: RunningConsole;
  let workDir: string;
  let env: Record<string, string>;
  let broken: string | undefined;

  /** One block in bash, with the variables the earlier blocks set (kept in a file between blocks). */
  const runStep = (step: QuickstartStep): Promise<StepRun> => {
    const state = join(workDir, "variables.sh");
    const script = [
      "set -a -e -o pipefail",
      `[ -f '${state}' ] && source '${state}'`,
      step.script.replaceAll("pnpm -s sb ", `${CLI} `),
      `export -p > '${state}'`,
    ].join("\n");
    return runProcess("bash", ["-c", script], env);
  };

  /** The echoes the fake Meta delivered to the ingress (its record of every webhook it sent). */
  const echoesSent = async () => {
    const deliveries = (await (await system.fakeMeta("/webhooks")).json()) as Array<{ body: string }>;
    return deliveries
      .flatMap((d) => (JSON.parse(d.body) as { entry: Array<{ messaging: EchoItem[] }> }).entry)
      .flatMap((entry) => entry.messaging)
      .filter((item) => item.message?.is_echo);
  };

  /** What each step must have done; keyed by the doc's step names, in the doc's order. */
  const checks: Record<string, (run: StepRun) => Promise<void> | void> = {
    env: (run) => {
      expect(run.stdout).toBe("");
    },
    ready: (run) => {
      const answers = jsonLines(run.stdout);
      expect(answers).toHaveLength(5);
      for (const answer of answers) expect(answer.status).toBe("ready");
    },
    register: async () => {
      const pages = (await (await system.fakeMeta("/pages")).json()) as Array<{ pageId: string }>;
      expect(pages.map((p) => p.pageId).sort()).toEqual(everyPageId);
    },
    connect: async (run) => {
      for (const page of PAGES)
        expect(run.stdout).toContain(`connected page ${page.pageId} (${page.name}) for acme`);
      expect(run.stdout).toContain(
        `connected Instagram account ${INSTAGRAM.pageId} (${INSTAGRAM.name}) for acme`,
      );
      const rows = await system.db.pageConnection.findMany({
        where: { companyId: "acme", status: "active" },
      });
      expect(rows.map((r) => `${r.pageId} ${r.platform}`).sort()).toEqual([
        `${SHOES.pageId} messenger`,
        `${HATS.pageId} messenger`,
        `${INSTAGRAM.pageId} instagram`,
      ]);
    },
    subscribed: async () => {
      const rows = await system.db.pageSubscription.findMany({ where: { status: "subscribed" } });
      expect(rows.map((r) => r.pageId).sort()).toEqual(everyPageId);
      // The account on the Instagram host, with its own token.
      const igCalls = (await (
        await system.fakeMeta(`/calls?pageId=${INSTAGRAM.pageId}&endpoint=subscribed_apps`)
      ).json()) as Array<{ host: string; token: string }>;
      expect(igCalls.length).toBeGreaterThan(0);
      for (const call of igCalls) expect(call).toMatchObject({ host: "instagram", token: INSTAGRAM.token });
    },
    webhooks: (run) => {
      const deliveries = jsonLines(run.stdout);
      expect(deliveries).toHaveLength(3);
      for (const delivery of deliveries) {
        expect(delivery.status).toBe(200);
        expect(JSON.parse(delivery.body).status).toBe("stored");
      }
    },
    "api-key": async (run) => {
      expect(run.stdout).toMatch(/^sbk_\S+\n$/);
      expect(run.stderr).toContain("it is shown only now");
      expect(await system.db.apiKey.count({ where: { companyId: "acme" } })).toBe(1);
    },
    read: async (run) => {
      const rows = await system.db.message.findMany({ where: { direction: "incoming" } });
      expect(rows.map((r) => `${r.pageId} ${r.mid}`).sort()).toEqual([
        `${SHOES.pageId} m_quickstart-shoes-1`,
        `${HATS.pageId} m_quickstart-hats-1`,
        `${INSTAGRAM.pageId} aWdfZAG1f-quickstart-ig-1`,
      ]);
      const [conversation, message, instagram] = jsonLines(run.stdout);
      expect(conversation.psid).toBe(SHOES.psid);
      expect(conversation.contact).toMatchObject({ firstName: "Ada", lastName: "Lovelace" });
      expect(message).toMatchObject({
        direction: "incoming",
        status: "received",
        mid: "m_quickstart-hats-1",
      });
      expect(instagram).toEqual({
        psid: INSTAGRAM.psid,
        platform: "instagram",
        name: "Ada Lovelace",
        username: "ada",
        lastMessage: "Do you ship to Lisbon?",
      });
    },
    reply: (run) => {
      const answers = jsonLines(run.stdout);
      expect(answers.map((a) => a.status)).toEqual(["sending", "sending", "sending"]);
    },
    settled: async (run) => {
      const replies = await system.db.message.findMany({ where: { direction: "outgoing" } });
      expect(replies).toHaveLength(3);
      const echoes = await echoesSent();
      for (const reply of replies) {
        expect(reply.status).toBe("sent");
        // Meta's timestamp on the row: the echo reached this row (and made no second one).
        const echo = echoes.find((e) => e.message.mid === reply.mid);
        // Instagram echoes carry no metadata: matched by mid (or the send in flight).
        expect(echo?.message.metadata).toBe(reply.platform === "instagram" ? undefined : reply.id);
        expect(reply.sentAt.getTime()).toBe(echo?.timestamp);
      }
      const listed = jsonLines(run.stdout);
      expect(listed.map((m) => `${m.direction} ${m.status}`)).toEqual([
        "incoming received",
        "outgoing sent",
        "incoming received",
        "outgoing sent",
        "incoming received",
        "outgoing sent",
      ]);
    },
    "fake-meta-records": async (run) => {
      const replies = await system.db.message.findMany({ where: { direction: "outgoing" } });
      const lines = jsonLines(run.stdout);
      const calls = lines.filter((line) => "host" in line);
      const echoes = lines.filter((line) => !("host" in line));
      for (const page of EVERY_PAGE) {
        const reply = replies.find((r) => r.pageId === page.pageId);
        const instagram = page === INSTAGRAM;
        expect(calls).toContainEqual({
          host: instagram ? "instagram" : "facebook",
          pageId: page.pageId,
          token: page.token,
          appsecretProofValid: true,
          metadata: instagram ? null : reply?.id,
        });
        expect(echoes).toContainEqual({
          status: 200,
          page: page.pageId,
          mid: reply?.mid,
          metadata: instagram ? null : reply?.id,
        });
      }
      expect(calls).toHaveLength(3);
      expect(echoes).toHaveLength(3);
    },
    console: (run) => {
      const pages = jsonLines(run.stdout);
      expect(pages.map((p) => `${p.pageId} ${p.platform}`).sort()).toEqual([
        `${SHOES.pageId} messenger`,
        `${HATS.pageId} messenger`,
        `${INSTAGRAM.pageId} instagram`,
      ]);
      for (const page of pages)
        expect(page).toMatchObject({ subscriptionStatus: "subscribed", tokenStatus: "ok", problems: [] });
    },
  };

  beforeAll(async () => {
    const missing = ["bash", "curl", "jq"].filter(
      (tool) => spawnSync("bash", ["-c", `command -v ${tool}`]).status !== 0,
    );
    if (missing.length > 0) throw new Error(`the quickstart needs ${missing.join(", ")} on PATH`);
    system = await startSystem();
    operatorConsole = await startConsole(system);
    workDir = mkdtempSync(join(tmpdir(), "sb-quickstart-"));
    env = {
      ...(process.env as Record<string, string>),
      ...system.env,
      INGRESS: system.urls.ingress,
      ROUTER: system.urls["page-router"],
      API: system.urls["message-service"],
      SUBSCRIPTIONS: system.urls["subscription-service"],
      CONSOLE: operatorConsole.url,
      FAKE_META: system.urls["fake-meta"],
      FAKE_META_CONTROL_TOKEN: system.fakeMetaControlToken,
      OPERATOR_TOKEN,
    };
  });

  afterAll(async () => {
    await operatorConsole?.stop();
    await system?.stop();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it("has a check for every step, in the doc's order, and calls the CLI as `pnpm -s sb`", () => {
    expect(steps.map((s) => s.name)).toEqual(Object.keys(checks));
    expect(steps.filter((s) => s.script.includes("pnpm -s sb ")).map((s) => s.name)).toEqual([
      "connect",
      "subscribed",
      "api-key",
    ]);
  });

  for (const step of steps) {
    it(`step ${step.name}${step.retry ? " (re-run until it shows the outcome)" : ""}`, async () => {
      if (broken) throw new Error(`not run: step ${broken} failed`);
      const check = checks[step.name];
      if (!check) throw new Error(`no check for step ${step.name}`);
      try {
        const attempt = async () => {
          const run = await runStep(step);
          if (run.code !== 0) throw new Error(`exit ${run.code}\n${run.stdout}\n${run.stderr}`);
          await check(run);
          return true;
        };
        if (step.retry) await eventually(attempt, { timeoutMs: 20_000, intervalMs: 500, message: step.name });
        else await attempt();
      } catch (error) {
        broken = step.name;
        throw error;
      }
    });
  }
});
