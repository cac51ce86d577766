export { allReady, startTestBed, type TestBed } from "./bed";
export { type Ledger, runLoad } from "./load";
export { resultTable, runScenario } from "./run";
export { quickScenarios, type Scenario, scenarios } from "./scenarios";
export type { ScenarioResult } from "./verify";
export { type AcceptedDelivery, startWebhookReceiver, type WebhookReceiver } from "./webhook-receiver";
