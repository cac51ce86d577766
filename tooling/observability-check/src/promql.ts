/**
 * Names of the exported metrics a PromQL expression reads. Switchboard's metrics all start with
 * `switchboard_`; recording rules (`level:metric:operation`) contain colons and are not exported.
 */
export function metricNamesIn(expr: string): string[] {
  const names = expr.match(/(?<![:\w])switchboard_[a-zA-Z0-9_]*(?![:\w])/g) ?? [];
  return [...new Set(names)].sort();
}
