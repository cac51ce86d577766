/**
 * The reads of pages, conversations and messages as the Conversations API and the console show them: one
 * owner for the views the contracts define, each listing a keyset page over an index.
 */
export {
  ConversationCursor,
  decodeCursor,
  encodeCursor,
  InvalidCursorError,
  MessageCursor,
} from "./cursor";
export {
  type ConversationHeader,
  conversationsQuery,
  findConversation,
  findConversationId,
  findPageView,
  listCompanyPages,
  listConversations,
  listMessages,
  messagesQuery,
  type PageOf,
} from "./queries";
