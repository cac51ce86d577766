export * from "./api";
export * from "./canary";
export * from "./events";
export * from "./fixtures";
export * from "./reconcile";
export * from "./send";
export * from "./topology";
export * from "./webhook";
