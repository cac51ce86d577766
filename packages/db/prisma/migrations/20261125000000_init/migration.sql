-- CreateEnum
CREATE TYPE "page_status" AS ENUM ('active', 'disabled', 'reauthorization_required');

-- CreateEnum
CREATE TYPE "message_direction" AS ENUM ('incoming', 'outgoing');

-- CreateEnum
CREATE TYPE "message_status" AS ENUM ('received', 'sending', 'sent', 'delivered', 'read', 'failed');

-- CreateEnum
CREATE TYPE "subscription_status" AS ENUM ('pending', 'subscribed', 'missing', 'error', 'reauthorization_required', 'unsubscribed');

-- CreateTable
CREATE TABLE "page_connections" (
    "id" UUID NOT NULL,
    "company_id" TEXT NOT NULL,
    "page_id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "page_access_token_enc" TEXT NOT NULL,
    "status" "page_status" NOT NULL DEFAULT 'active',
    "status_reason" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "page_connections_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "contacts" (
    "id" UUID NOT NULL,
    "page_id" TEXT NOT NULL,
    "psid" TEXT NOT NULL,
    "first_name" TEXT,
    "last_name" TEXT,
    "profile_pic_url" TEXT,
    "profile_fetched_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "contacts_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "conversations" (
    "id" UUID NOT NULL,
    "page_id" TEXT NOT NULL,
    "contact_id" UUID NOT NULL,
    "last_message_at" TIMESTAMPTZ(3),
    "delivered_watermark" TIMESTAMPTZ(3),
    "read_watermark" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "conversations_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "messages" (
    "id" UUID NOT NULL,
    "page_id" TEXT NOT NULL,
    "conversation_id" UUID NOT NULL,
    "mid" TEXT,
    "direction" "message_direction" NOT NULL,
    "kind" TEXT NOT NULL,
    "text" TEXT,
    "payload" JSONB NOT NULL DEFAULT '{}',
    "status" "message_status" NOT NULL,
    "sent_at" TIMESTAMPTZ(3) NOT NULL,
    "idempotency_key" TEXT,
    "error" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "messages_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "message_reactions" (
    "id" UUID NOT NULL,
    "page_id" TEXT NOT NULL,
    "psid" TEXT NOT NULL,
    "target_mid" TEXT NOT NULL,
    "reaction" TEXT,
    "emoji" TEXT,
    "reacted_at" TIMESTAMPTZ(3) NOT NULL,
    "removed" BOOLEAN NOT NULL DEFAULT false,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "message_reactions_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "conversation_events" (
    "id" UUID NOT NULL,
    "page_id" TEXT NOT NULL,
    "conversation_id" UUID NOT NULL,
    "event_id" TEXT NOT NULL,
    "kind" TEXT NOT NULL,
    "payload" JSONB NOT NULL,
    "occurred_at" TIMESTAMPTZ(3) NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "conversation_events_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "page_subscriptions" (
    "id" UUID NOT NULL,
    "page_id" TEXT NOT NULL,
    "desired_fields" TEXT[],
    "subscribed_fields" TEXT[],
    "status" "subscription_status" NOT NULL DEFAULT 'pending',
    "last_checked_at" TIMESTAMPTZ(3),
    "last_subscribed_at" TIMESTAMPTZ(3),
    "last_error" TEXT,
    "consecutive_failures" INTEGER NOT NULL DEFAULT 0,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "page_subscriptions_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "api_keys" (
    "id" UUID NOT NULL,
    "company_id" TEXT NOT NULL,
    "name" TEXT,
    "key_hash" TEXT NOT NULL,
    "prefix" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_used_at" TIMESTAMPTZ(3),
    "revoked_at" TIMESTAMPTZ(3),

    CONSTRAINT "api_keys_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "page_connections_page_id_key" ON "page_connections"("page_id");

-- CreateIndex
CREATE INDEX "page_connections_company_id_idx" ON "page_connections"("company_id");

-- CreateIndex
CREATE UNIQUE INDEX "contacts_page_id_psid_key" ON "contacts"("page_id", "psid");

-- CreateIndex
CREATE INDEX "conversations_page_id_last_message_at_id_idx" ON "conversations"("page_id", "last_message_at" DESC, "id");

-- CreateIndex
CREATE UNIQUE INDEX "conversations_page_id_contact_id_key" ON "conversations"("page_id", "contact_id");

-- CreateIndex
CREATE INDEX "messages_conversation_id_sent_at_mid_idx" ON "messages"("conversation_id", "sent_at", "mid");

-- CreateIndex
CREATE UNIQUE INDEX "messages_page_id_mid_key" ON "messages"("page_id", "mid");

-- CreateIndex
CREATE UNIQUE INDEX "messages_page_id_idempotency_key_key" ON "messages"("page_id", "idempotency_key");

-- CreateIndex
CREATE UNIQUE INDEX "message_reactions_page_id_target_mid_psid_key" ON "message_reactions"("page_id", "target_mid", "psid");

-- CreateIndex
CREATE UNIQUE INDEX "conversation_events_page_id_event_id_key" ON "conversation_events"("page_id", "event_id");

-- CreateIndex
CREATE UNIQUE INDEX "page_subscriptions_page_id_key" ON "page_subscriptions"("page_id");

-- CreateIndex
CREATE UNIQUE INDEX "api_keys_key_hash_key" ON "api_keys"("key_hash");

-- CreateIndex
CREATE INDEX "api_keys_company_id_idx" ON "api_keys"("company_id");

-- AddForeignKey
ALTER TABLE "conversations" ADD CONSTRAINT "conversations_contact_id_fkey" FOREIGN KEY ("contact_id") REFERENCES "contacts"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "messages" ADD CONSTRAINT "messages_conversation_id_fkey" FOREIGN KEY ("conversation_id") REFERENCES "conversations"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "conversation_events" ADD CONSTRAINT "conversation_events_conversation_id_fkey" FOREIGN KEY ("conversation_id") REFERENCES "conversations"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

