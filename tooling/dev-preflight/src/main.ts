import { checkDependencies, preflightReport } from "./preflight";

// `pnpm dev` runs this first (the root package.json): a missing store or broker is named with how to
// start it, instead of five services each failing in a loop.
const results = await checkDependencies(process.env);
const report = preflightReport(results);
const ready = results.every((r) => r.ok);
(ready ? process.stdout : process.stderr).write(report);
// A client's connect timer may still be pending; the answer is known, so do not wait for it.
process.exit(ready ? 0 : 1);
