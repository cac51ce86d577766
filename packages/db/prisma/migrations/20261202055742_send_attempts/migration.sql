-- AlterTable
ALTER TABLE "messages" ADD COLUMN     "queue_seq" BIGSERIAL NOT NULL,
ADD COLUMN     "send_attempt_started_at" TIMESTAMPTZ(3),
ADD COLUMN     "send_attempts" INTEGER NOT NULL DEFAULT 0;

-- CreateIndex
CREATE INDEX "messages_conversation_id_status_queue_seq_idx" ON "messages"("conversation_id", "status", "queue_seq");

-- CreateIndex
CREATE INDEX "messages_status_updated_at_idx" ON "messages"("status", "updated_at");

