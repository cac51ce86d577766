-- CreateTable
CREATE TABLE "console_session_revocations" (
    "id" TEXT NOT NULL,
    "expires_at" TIMESTAMPTZ(3) NOT NULL,
    "revoked_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "console_session_revocations_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "console_session_revocations_expires_at_idx" ON "console_session_revocations"("expires_at");

