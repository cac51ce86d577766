export function schemaDiffSql(fromSchema: string | null, toSchema: string): string;
