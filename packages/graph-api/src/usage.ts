/**
 * Rate-limit usage Meta reports in response headers (https://developers.facebook.com/docs/graph-api/overview/rate-limiting):
 * `X-App-Usage` and `X-Page-Usage` are `{call_count, total_cputime, total_time}` percentages;
 * `X-Business-Use-Case-Usage` is `{ "<id>": [{ type, call_count, total_cputime, total_time,
 * estimated_time_to_regain_access (minutes) }] }`.
 */
export interface GraphUsage {
  appUsage?: unknown;
  pageUsage?: unknown;
  businessUseCaseUsage?: unknown;
  /** The highest percentage found in any of the three headers: how close this app/page is to throttling. */
  maxPercent?: number;
  /** The longest `estimated_time_to_regain_access` in the business use case header. */
  estimatedTimeToRegainAccessMinutes?: number;
}

const PERCENT_FIELDS = ["call_count", "total_cputime", "total_time", "acc_id_util_pct"];

function parseJsonHeader(value: string | null): unknown {
  if (!value) return undefined;
  try {
    return JSON.parse(value);
  } catch {
    return undefined;
  }
}

function percentsOf(value: unknown): number[] {
  if (!value || typeof value !== "object") return [];
  const record = value as Record<string, unknown>;
  return PERCENT_FIELDS.map((field) => record[field]).filter((v): v is number => typeof v === "number");
}

export function parseUsage(headers: Headers): GraphUsage {
  const appUsage = parseJsonHeader(headers.get("x-app-usage"));
  const pageUsage = parseJsonHeader(headers.get("x-page-usage"));
  const businessUseCaseUsage = parseJsonHeader(headers.get("x-business-use-case-usage"));
  const percents = [...percentsOf(appUsage), ...percentsOf(pageUsage)];
  const regain: number[] = [];
  if (businessUseCaseUsage && typeof businessUseCaseUsage === "object") {
    for (const entries of Object.values(businessUseCaseUsage)) {
      if (!Array.isArray(entries)) continue;
      for (const entry of entries) {
        percents.push(...percentsOf(entry));
        const minutes = (entry as Record<string, unknown>)?.estimated_time_to_regain_access;
        if (typeof minutes === "number") regain.push(minutes);
      }
    }
  }
  const usage: GraphUsage = {};
  if (appUsage !== undefined) usage.appUsage = appUsage;
  if (pageUsage !== undefined) usage.pageUsage = pageUsage;
  if (businessUseCaseUsage !== undefined) usage.businessUseCaseUsage = businessUseCaseUsage;
  if (percents.length > 0) usage.maxPercent = Math.max(...percents);
  if (regain.length > 0) usage.estimatedTimeToRegainAccessMinutes = Math.max(...regain);
  return usage;
}
