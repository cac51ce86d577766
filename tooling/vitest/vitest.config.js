import { defineConfig } from "vitest/config";

// The set-up's own tests: no global set-up (it is what they test).
export default defineConfig({ test: { include: ["*.test.js"], testTimeout: 60_000 } });
