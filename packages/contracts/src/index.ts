export * from "./events";
export * from "./fixtures";
export * from "./topology";
export * from "./webhook";
