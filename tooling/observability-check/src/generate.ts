import { writeFileSync } from "node:fs";
import { paths } from "./files";
import { prometheusRuleYaml, readRuleGroups } from "./rules";

writeFileSync(paths.prometheusRule, prometheusRuleYaml(readRuleGroups()));
console.log(`wrote ${paths.prometheusRule}`);
