-- AlterEnum
ALTER TYPE "page_status" ADD VALUE 'blocked';

-- AlterTable
ALTER TABLE "page_connections" ADD COLUMN     "policy_action" TEXT,
ADD COLUMN     "policy_changed_at" TIMESTAMPTZ(3),
ADD COLUMN     "policy_reason" TEXT;

-- AlterTable
ALTER TABLE "conversations" ADD COLUMN     "thread_owner_app_id" TEXT,
ADD COLUMN     "thread_owner_changed_at" TIMESTAMPTZ(3);

-- AlterTable
ALTER TABLE "messages" ADD COLUMN     "received_on_standby" BOOLEAN NOT NULL DEFAULT false;

-- CreateTable
CREATE TABLE "page_policy_events" (
    "id" UUID NOT NULL,
    "page_id" TEXT NOT NULL,
    "event_id" TEXT NOT NULL,
    "action" TEXT NOT NULL,
    "reason" TEXT,
    "occurred_at" TIMESTAMPTZ(3) NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "page_policy_events_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "page_policy_events_page_id_occurred_at_idx" ON "page_policy_events"("page_id", "occurred_at");

-- CreateIndex
CREATE UNIQUE INDEX "page_policy_events_page_id_event_id_key" ON "page_policy_events"("page_id", "event_id");

