export {
  DEFAULT_SUBSCRIBED_FIELDS,
  INSTAGRAM_DEFAULT_SUBSCRIBED_FIELDS,
  missingFields,
  subscribedFieldsEnv,
} from "./fields";
export { platformSubscriptionsOf, type SubscriptionEnv, subscriptionEnvShape } from "./platforms";
export {
  describeFailure,
  type FailureKind,
  inspectSubscription,
  type PlatformSubscription,
  platformSubscriptionOf,
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
