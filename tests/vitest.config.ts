import { switchboardTestConfig } from "@switchboard/vitest-config";

// End-to-end tests start the built services as processes, so they run one file at a time.
export default switchboardTestConfig({ testTimeout: 90_000, hookTimeout: 120_000, fileParallelism: false });
