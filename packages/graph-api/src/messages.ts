/** The Send API body (https://developers.facebook.com/docs/messenger-platform/reference/send-api). */
export type MessagingType = "RESPONSE" | "UPDATE" | "MESSAGE_TAG";

export interface QuickReply {
  content_type: "text" | "user_phone_number" | "user_email";
  title?: string;
  payload?: string;
  image_url?: string;
}

export interface MessageAttachment {
  type: "image" | "video" | "audio" | "file" | "template";
  payload: { url?: string; is_reusable?: boolean; attachment_id?: string; [key: string]: unknown };
}

export interface SendMessageBody {
  recipient: { id: string };
  /** Required on Messenger; Instagram takes it only with a tag. */
  messaging_type?: MessagingType;
  /** Required with MESSAGE_TAG (e.g. HUMAN_AGENT, ACCOUNT_UPDATE). */
  tag?: string;
  message: {
    text?: string;
    attachment?: MessageAttachment;
    quick_replies?: QuickReply[];
    /** Up to 1,000 characters; Meta returns it in the echo webhook, so a send can be matched to its echo. */
    metadata?: string;
  };
}

export interface SendMessageResult {
  recipient_id: string;
  message_id: string;
}

export interface SubscribedApp {
  id: string;
  name?: string;
  subscribed_fields: string[];
}

export interface UserProfile {
  first_name?: string;
  last_name?: string;
  /** Instagram: the display name and the @username (an Instagram user has no first and last name). */
  name?: string;
  username?: string;
  profile_pic?: string;
}

/** `GET /refresh_access_token?grant_type=ig_refresh_token`: a long-lived Instagram token, 60 more days. */
export interface RefreshedToken {
  access_token: string;
  /** Seconds until the new token expires. */
  expires_in: number;
}

/** One message of a Page's thread with a person, as the Conversations API returns it. */
export interface ThreadMessage {
  /** The mid. */
  id: string;
  message?: string;
  created_time: string;
  from?: { id: string };
}
