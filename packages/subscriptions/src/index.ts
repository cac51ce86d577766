export { DEFAULT_SUBSCRIBED_FIELDS, missingFields, subscribedFieldsEnv } from "./fields";
export {
  describeFailure,
  type FailureKind,
  inspectSubscription,
  type ReconcileAction,
  type ReconcileMode,
  type ReconcileResult,
  reconcileSubscription,
  type SubscriptionContext,
  type SubscriptionFailure,
  type SubscriptionView,
  UnreadableTokenError,
  unsubscribePage,
  viewOf,
} from "./subscription";
