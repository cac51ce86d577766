export {
  createFailoverRedis,
  type FailoverOptions,
  isConnectionError,
  RedisUnavailableError,
} from "./failover";
export { closeRedisNodes, connectRedisNodes, type RedisNodesOptions, redisQuorumReady } from "./nodes";
