-- AlterTable
ALTER TABLE "messages" ADD COLUMN     "edit_count" INTEGER NOT NULL DEFAULT 0,
ADD COLUMN     "edited_at" TIMESTAMPTZ(3);

-- CreateTable
CREATE TABLE "message_edits" (
    "id" UUID NOT NULL,
    "page_id" TEXT NOT NULL,
    "mid" TEXT NOT NULL,
    "num_edit" INTEGER NOT NULL,
    "text" TEXT,
    "edited_at" TIMESTAMPTZ(3) NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "message_edits_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "message_edits_page_id_mid_num_edit_key" ON "message_edits"("page_id", "mid", "num_edit");

