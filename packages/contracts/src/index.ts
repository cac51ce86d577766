export * from "./events";
export * from "./fixtures";
export * from "./reconcile";
export * from "./topology";
export * from "./webhook";
