import type { ApiError } from "@switchboard/contracts";
import type { Response } from "express";
import type { ZodError } from "zod";

export type ApiErrorCode = ApiError["error"]["code"];

export function sendError(
  res: Response,
  status: number,
  code: ApiErrorCode,
  message: string,
  issues?: ApiError["error"]["issues"],
) {
  const body: ApiError = { error: { code, message, ...(issues ? { issues } : {}) } };
  res.status(status).json(body);
}

export function sendInvalid(res: Response, error: ZodError, what: string) {
  sendError(
    res,
    400,
    "invalid_request",
    `invalid ${what}`,
    error.issues.map((issue) => ({ path: issue.path.join("."), message: issue.message })),
  );
}
