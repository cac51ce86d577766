import { fileURLToPath } from "node:url";
import { checkRepository } from "./check";

// `pnpm infra:check`: renders every overlay offline and fails on any schema, field or policy finding.
const root = fileURLToPath(new URL("../../../", import.meta.url));
const report = await checkRepository(root);
for (const line of report.checked) console.log(`checked ${line}`);
for (const finding of report.findings) {
  console.error(`✗ [${finding.rule}] ${finding.object}: ${finding.message}`);
}
if (report.findings.length > 0) {
  console.error(`${report.findings.length} finding(s)`);
  process.exit(1);
}
console.log("✓ all manifests and the image recipe pass");
