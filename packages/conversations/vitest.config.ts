import { switchboardTestConfig } from "@switchboard/vitest-config";

export default switchboardTestConfig();
