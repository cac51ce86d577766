import { fileURLToPath } from "node:url";
import { defaultClientConditions, defaultServerConditions } from "vite";
import { defineConfig } from "vitest/config";

// Workspace packages resolve to their TypeScript source in tests, as in `pnpm dev`.
const source = "@switchboard/source";

/** @param {import("vitest/config").ViteUserConfig["test"]} test */
export function switchboardTestConfig(test = {}) {
  return defineConfig({
    resolve: { conditions: [source, ...defaultClientConditions] },
    ssr: { resolve: { conditions: [source, ...defaultServerConditions] } },
    test: {
      testTimeout: 30_000,
      hookTimeout: 60_000,
      globalSetup: [fileURLToPath(new URL("./global-setup.js", import.meta.url))],
      ...test,
    },
  });
}
