// Expected business outcomes carry a stable code; one table maps codes to HTTP statuses.
// Anything else that escapes a handler is a defect and answers 500 `internal`.
export const ERROR_STATUS = {
  validation_failed: 400,
  invalid_cursor: 400,
  unauthenticated: 401,
  invalid_credentials: 401,
  payment_declined: 402,
  forbidden: 403,
  not_found: 404,
  route_not_found: 404,
  out_of_stock: 409,
  email_taken: 409,
  sku_taken: 409,
  idempotency_conflict: 409,
  illegal_transition: 409,
  cart_not_open: 409,
  cart_changed: 409,
  reservation_expired: 409,
  insufficient_stock: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  idempotency_key_reused: 422,
  cart_empty: 422,
  cart_limit: 422,
  price_unavailable: 422,
  rate_limited: 429,
  internal: 500,
  unavailable: 503,
  timeout: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'AppError';
    this.code = code;
    this.status = ERROR_STATUS[code];
    this.details = details;
  }
}

export function notFound(what: string): AppError {
  return new AppError('not_found', `${what} not found`);
}

/** Programming errors: fail loudly, never as a business outcome. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}
