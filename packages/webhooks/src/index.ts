export * from "./endpoint-store";
export * from "./http-delivery";
export * from "./schedule";
export * from "./signature";
export * from "./target-policy";
