import type { FerryError } from './errors';
import { toFerryError } from './errors';

export type Ok<T> = { ok: true; value: T };
export type Err<E = FerryError> = { ok: false; error: E };
export type Result<T, E = FerryError> = Ok<T> | Err<E>;

export const ok = <T>(value: T): Ok<T> => ({ ok: true, value });
export const err = <E = FerryError>(error: E): Err<E> => ({ ok: false, error });

/** Runs an async function and captures anything it throws as a FerryError result. */
export async function capture<T>(fn: () => Promise<T> | T): Promise<Result<T>> {
  try {
    return ok(await fn());
  } catch (e) {
    return err(toFerryError(e));
  }
}
