export { type Balancer, startBalancer } from "./balancer";
export {
  type ManagedNode,
  type NatsCluster,
  type PrivatePostgres,
  type RedisNodes,
  startNatsCluster,
  startPrivatePostgres,
  startRedisNodes,
} from "./cluster";
export { createIsolatedDatabase, type IsolatedDatabase, type IsolatedDatabaseOptions } from "./database";
export { eventually } from "./eventually";
export { freePort, uniqueId } from "./ids";
export { deleteRedisKeys } from "./redis-keys";
export {
  repoRoot,
  type ServiceProcess,
  type ServiceProcessOptions,
  startServiceProcess,
} from "./service-process";
export {
  ALL_SERVICES,
  type CliResult,
  deleteNamespaceStreams,
  type LocalSystem,
  type LocalSystemOptions,
  migrateBus,
  runProcess,
  runScript,
  SERVICES,
  type ServiceName,
  type Stores,
  type SystemApp,
  startLocalSystem,
} from "./system";
