import { createCliContext } from "./context";
import { buildProgram } from "./program";

const context = createCliContext();
try {
  await buildProgram(context).parseAsync(process.argv);
} catch (error) {
  console.error(`error: ${(error as Error).message}`);
  process.exitCode = process.exitCode || 1;
} finally {
  await context.close();
}
