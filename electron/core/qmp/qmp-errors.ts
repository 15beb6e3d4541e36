import { FerryException } from '../../../shared/errors';
import type { ErrorCode } from '../../../shared/errors';

/** Base class of every QMP failure; `code` is one of the stable QMP_* error codes. */
export class QmpError extends FerryException {
  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(code, message, details, options);
    this.name = new.target.name;
  }
}

/** The server did not send a valid greeting (or none in time). */
export class QmpGreetingError extends QmpError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('QMP_GREETING', message, details);
  }
}

/** `qmp_capabilities` failed or was answered with something unexpected. */
export class QmpNegotiationError extends QmpError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('QMP_NEGOTIATION', message, details);
  }
}

/** The byte stream did not contain what QMP promises (bad JSON, unknown message shape...). */
export class QmpProtocolError extends QmpError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('QMP_PROTOCOL', message, details);
  }
}

/** A line longer than the framer's cap; the framer skips to the next newline. */
export class QmpLineTooLongError extends QmpError {
  readonly limit: number;
  constructor(limit: number) {
    super('QMP_LINE_TOO_LONG', `QMP line longer than ${limit} bytes dropped`, { limit });
    this.limit = limit;
  }
}

export class QmpTimeoutError extends QmpError {
  constructor(what: string, timeoutMs: number) {
    super('QMP_TIMEOUT', `${what} timed out after ${timeoutMs} ms`, { what, timeoutMs });
  }
}

/** The connection ended; every pending command and event waiter is rejected with this. */
export class QmpDisconnectedError extends QmpError {
  constructor(reason: string) {
    super('QMP_DISCONNECTED', `QMP connection closed: ${reason}`, { reason });
  }
}

/** QEMU answered a command with an error object. */
export class QmpExecuteError extends QmpError {
  /** QMP error class, e.g. `CommandNotFound`, `GenericError`, `DeviceNotFound`. */
  readonly errorClass: string;
  readonly desc: string;
  readonly command: string;
  constructor(command: string, errorClass: string, desc: string) {
    super('QMP_EXECUTE', `${command}: ${desc} (${errorClass})`, { command, errorClass, desc });
    this.errorClass = errorClass;
    this.desc = desc;
    this.command = command;
  }
}
