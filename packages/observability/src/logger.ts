import pino, { type Logger } from "pino";

export type { Logger } from "pino";

/**
 * Paths that may hold a secret anywhere in a log object. Tokens are also kept out of log calls by
 * design; this is the net under that rule.
 */
export const REDACTED_PATHS = [
  "token",
  "accessToken",
  "access_token",
  "pageAccessToken",
  "page_access_token",
  "pageAccessTokenEnc",
  "appSecret",
  "appsecret_proof",
  "apiKey",
  "authorization",
  "*.token",
  "*.accessToken",
  "*.access_token",
  "*.pageAccessToken",
  "*.page_access_token",
  "*.pageAccessTokenEnc",
  "*.appSecret",
  "*.appsecret_proof",
  "*.apiKey",
  "*.authorization",
  "req.headers.authorization",
  "req.headers.cookie",
  'req.headers["x-hub-signature-256"]',
  'req.headers["x-hub-signature"]',
];

export interface LoggerOptions {
  service: string;
  level?: string;
  /** Where lines go; a test passes a stream to read them back. */
  destination?: pino.DestinationStream;
}

export function createLogger({ service, level = "info", destination }: LoggerOptions): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { service },
    redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  return destination ? pino(options, destination) : pino(options);
}
