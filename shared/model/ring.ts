/**
 * What the picture reads a sample history through: an array (a recorded timeline) or a
 * Ring (a live migration in the console's store). Both have `length`, `at(i)` (negative
 * counts from the end) and iteration.
 */
export interface Seq<T> {
  readonly length: number;
  at(index: number): T | undefined;
  [Symbol.iterator](): Iterator<T>;
}

/** The items and what was derived from them, shared by every version of a ring. */
interface Backing<T> {
  items: T[];
  /** Per key: a map()'s backing (one value per item), or a fold's running value after each item. */
  derived: Map<unknown, Backing<unknown> | unknown[]>;
  /** False for a map()'s result: its items are another ring's cache, never pushed to. */
  owned: boolean;
}

/**
 * An immutable ring buffer of the last `capacity` items, with O(1) append. Each `push`
 * returns a new Ring (a new identity for zustand's selectors); the old one still shows
 * exactly what it showed. Versions share one backing array that only ever grows at its
 * end, past what any older version can see, so nothing a holder of an old version reads
 * ever changes. When the backing holds two rings' worth, the live window is copied to a
 * fresh one (amortised O(1) per push); pushing to an old version copies its window too.
 */
export class Ring<T> implements Seq<T> {
  private constructor(private readonly backing: Backing<T>, private readonly start: number, private readonly end: number, readonly capacity: number) {}

  static from<T>(items: Iterable<T>, capacity: number): Ring<T> {
    if (!(capacity >= 1)) throw new RangeError(`ring capacity must be at least 1 (got ${capacity})`);
    const all = [...items];
    const kept = all.length > capacity ? all.slice(all.length - capacity) : all;
    return new Ring({ items: kept, derived: new Map(), owned: true }, 0, kept.length, capacity);
  }

  get length(): number {
    return this.end - this.start;
  }

  at(index: number): T | undefined {
    const i = index < 0 ? index + this.end - this.start : index;
    return i >= 0 && i < this.end - this.start ? this.backing.items[this.start + i] : undefined;
  }

  *[Symbol.iterator](): Iterator<T> {
    const items = this.backing.items;
    for (let i = this.start; i < this.end; i++) yield items[i]!;
  }

  /** This ring with `item` appended (the oldest dropped past the capacity). */
  push(item: T): Ring<T> {
    let backing = this.backing;
    let start = this.start;
    let end = this.end;
    if (!backing.owned || backing.items.length !== end || start >= this.capacity) {
      // An older version (its successor already wrote here), a derived ring, or a full backing: copy the window.
      backing = { items: backing.items.slice(start, end), derived: new Map(), owned: true };
      end -= start;
      start = 0;
    }
    backing.items.push(item);
    end++;
    if (end - start > this.capacity) start = end - this.capacity;
    return new Ring(backing, start, end, this.capacity);
  }

  /** Items [from, to) of this ring as a ring (a view: nothing is copied). */
  slice(from = 0, to = this.length): Ring<T> {
    const n = this.length;
    const a = Math.max(0, Math.min(n, from < 0 ? from + n : from));
    const b = Math.max(a, Math.min(n, to < 0 ? to + n : to));
    return new Ring(this.backing, this.start + a, this.start + b, this.capacity);
  }

  /** Where this ring's items lie in its backing array (read-only: for tight loops over plain arrays). */
  span(): { items: readonly T[]; start: number; end: number } {
    return { items: this.backing.items, start: this.start, end: this.end };
  }

  toArray(): T[] {
    return this.backing.items.slice(this.start, this.end);
  }

  /**
   * `f` of every item, as a ring aligned with this one. Each item is mapped once per
   * backing, whatever the number of versions: `key` names the mapping (same key, same f).
   */
  map<U>(key: unknown, f: (item: T) => U): Ring<U> {
    let b = this.backing.derived.get(key) as Backing<U> | undefined;
    if (!b) this.backing.derived.set(key, (b = { items: [], derived: new Map(), owned: false }));
    const items = this.backing.items;
    for (let i = b.items.length; i < this.end; i++) b.items.push(f(items[i]!));
    return new Ring<U>(b, this.start, this.end, this.capacity);
  }

  /**
   * The fold of `step` over every item the backing holds up to this version's last one
   * (items already dropped from the window included), computed once per item. `step`
   * should return `acc` itself when nothing changes, so results keep their identity.
   */
  fold<A>(key: unknown, init: A, step: (acc: A, item: T) => A): A {
    if (this.end === 0) return init;
    let out = this.backing.derived.get(key) as A[] | undefined;
    if (!out) this.backing.derived.set(key, (out = []));
    const items = this.backing.items;
    for (let i = out.length; i < this.end; i++) out.push(step(i === 0 ? init : out[i - 1]!, items[i]!));
    return out[this.end - 1]!;
  }
}

/** Appends to a sample history, whatever it is now: an array becomes a ring of `capacity`. */
export function pushTo<T>(seq: Seq<T>, item: T, capacity: number): Ring<T> {
  return (seq instanceof Ring ? seq : Ring.from(seq, capacity)).push(item);
}

/** The last item matching `pred`, searching from the end (no copy). */
export function findLast<T>(seq: Seq<T>, pred: (item: T) => boolean): T | undefined {
  for (let i = seq.length - 1; i >= 0; i--) {
    const x = seq.at(i)!;
    if (pred(x)) return x;
  }
  return undefined;
}

/** The items of a sequence as one contiguous run of a plain array (an array is its own). */
export function spanOf<T>(seq: Seq<T>): { items: readonly T[]; start: number; end: number } {
  if (seq instanceof Ring) return seq.span();
  const items = Array.isArray(seq) ? (seq as readonly T[]) : [...seq];
  return { items, start: 0, end: items.length };
}

/** Items [from, to) of a sequence: a view of a ring, a copy of an array. */
export function sliceOf<T>(seq: Seq<T>, from: number, to: number): Seq<T> {
  return seq instanceof Ring ? seq.slice(from, to) : Array.isArray(seq) ? (seq as T[]).slice(from, to) : [...seq].slice(from, to);
}
