export * from "./logger";
export * from "./metrics";
export * from "./ops";
export * from "./shutdown";
