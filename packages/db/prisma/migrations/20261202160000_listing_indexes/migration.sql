-- The API's listings order by these exact expressions (keyset pagination): an index on the same
-- expressions lets a page of a conversation's history, or of a page's conversations, be read in order
-- without sorting the whole history (EXPLAIN on 1,000,000 messages in apps/message-service/README.md).

-- Conversations of a page, newest first; those without a message last.
CREATE INDEX "conversations_page_listing_idx"
  ON "conversations"("page_id", (COALESCE("last_message_at", '-infinity'::timestamptz)) DESC, "id" DESC);

-- Messages of a conversation in Meta's order: (sent_at, mid, id); a queued send has no mid yet.
CREATE INDEX "messages_conversation_listing_idx"
  ON "messages"("conversation_id", "sent_at", (COALESCE("mid", '')), "id");

-- Superseded by the listing indexes above.
DROP INDEX IF EXISTS "conversations_page_id_last_message_at_id_idx";
DROP INDEX IF EXISTS "messages_conversation_id_sent_at_mid_idx";
