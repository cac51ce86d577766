export { type ActivePages, type ActivePagesOptions, createActivePages } from "./active-pages";
export { createPsidFloodDetector, type PsidFloodDetector, type PsidFloodOptions } from "./psid-flood";
export { createPageQuota, type PageQuota, type PageQuotaOptions, pageRateOverridesEnv } from "./quota";
