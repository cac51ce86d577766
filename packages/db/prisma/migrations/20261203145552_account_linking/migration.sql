-- AlterTable
ALTER TABLE "contacts" ADD COLUMN     "account_link_changed_at" TIMESTAMPTZ(3),
ADD COLUMN     "account_link_code" TEXT,
ADD COLUMN     "account_link_status" TEXT;

-- CreateTable
CREATE TABLE "contact_notification_tokens" (
    "id" UUID NOT NULL,
    "page_id" TEXT NOT NULL,
    "psid" TEXT NOT NULL,
    "topic" TEXT NOT NULL,
    "token_enc" TEXT,
    "frequency" TEXT,
    "timezone" TEXT,
    "expires_at" TIMESTAMPTZ(3),
    "user_token_status" TEXT,
    "status" TEXT NOT NULL,
    "title" TEXT,
    "payload" TEXT,
    "changed_at" TIMESTAMPTZ(3) NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "contact_notification_tokens_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "contact_notification_tokens_page_id_psid_topic_key" ON "contact_notification_tokens"("page_id", "psid", "topic");

