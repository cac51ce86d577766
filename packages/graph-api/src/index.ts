export * from "./client";
export * from "./errors";
export * from "./messages";
export * from "./policy";
export * from "./usage";
