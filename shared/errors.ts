/**
 * Stable error codes. The renderer switches on these, timelines record them, and the
 * CLI maps them to exit codes: never rename one, only add.
 */
export const ERROR_CODES = [
  'INVALID_REQUEST',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'CONFIG_CORRUPT',
  'IO_ERROR',
  'UNSUPPORTED',
  'INTERNAL',
  // saved VM states (kept here, not at the end, so lists growing at the end merge cleanly)
  'STATE_CORRUPT',
  'STATE_LOAD_FAILED',
  // host transports
  'EXEC_FAILED',
  'TRANSPORT_CLOSED',
  'SSH_CONFIG_INVALID',
  'SSH_CONNECT_FAILED',
  'SSH_AUTH_FAILED',
  'SSH_PASSPHRASE_REQUIRED',
  'SSH_HOST_KEY_UNKNOWN',
  'SSH_HOST_KEY_CHANGED',
  'SSH_CHANNEL_REFUSED',
  /** Every SSH session channel the connection may hold is in use, and none freed in time. */
  'HOST_BUSY',
  'SSH_DISCONNECTED',
  // QMP
  'QMP_GREETING',
  'QMP_NEGOTIATION',
  'QMP_PROTOCOL',
  'QMP_LINE_TOO_LONG',
  'QMP_TIMEOUT',
  'QMP_DISCONNECTED',
  'QMP_EXECUTE',
  // migrations
  'MIGRATION_FAILED',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** What crosses the process boundary: plain data, never a stack trace. */
export interface FerryError {
  code: ErrorCode;
  message: string;
  details?: Record<string, unknown>;
}

/** Thrown inside the core; turned into a {@link FerryError} at the service boundary. */
export class FerryException extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FerryException';
    this.code = code;
    this.details = details;
  }

  toFerryError(): FerryError {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

export function isFerryException(e: unknown): e is FerryException {
  return e instanceof FerryException;
}

/** Any thrown value as a FerryError; unknown errors become INTERNAL with their message only. */
export function toFerryError(e: unknown): FerryError {
  if (e instanceof FerryException) return e.toFerryError();
  // A schema refusal anywhere (zod's error carries its issues): bad input, said in one line.
  const issues = (e as { issues?: unknown } | null)?.issues;
  if (e instanceof Error && Array.isArray(issues) && issues.every((i) => typeof (i as { message?: unknown }).message === 'string')) {
    return { code: 'INVALID_REQUEST', message: (issues as { path?: unknown[]; message: string }[]).map((i) => `${i.path?.length ? i.path.join('.') : 'input'}: ${i.message}`).join('; ') };
  }
  if (e instanceof Error) return { code: 'INTERNAL', message: e.message || e.name };
  return { code: 'INTERNAL', message: String(e) };
}
