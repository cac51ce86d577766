-- CreateEnum
CREATE TYPE "platform" AS ENUM ('messenger', 'instagram');

-- AlterTable
ALTER TABLE "page_connections" ADD COLUMN     "platform" "platform" NOT NULL DEFAULT 'messenger',
ADD COLUMN     "token_expires_at" TIMESTAMPTZ(3),
ADD COLUMN     "token_obtained_at" TIMESTAMPTZ(3),
ADD COLUMN     "token_refreshed_at" TIMESTAMPTZ(3);

-- AlterTable
ALTER TABLE "contacts" ADD COLUMN     "name" TEXT,
ADD COLUMN     "username" TEXT;

-- AlterTable
ALTER TABLE "conversations" ADD COLUMN     "platform" "platform" NOT NULL DEFAULT 'messenger';

-- AlterTable
ALTER TABLE "messages" ADD COLUMN     "platform" "platform" NOT NULL DEFAULT 'messenger';

-- AlterTable
ALTER TABLE "conversation_events" ADD COLUMN     "platform" "platform" NOT NULL DEFAULT 'messenger';

