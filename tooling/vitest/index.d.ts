import type { UserConfig } from "vitest/config";

export function switchboardTestConfig(test?: UserConfig["test"]): UserConfig;
