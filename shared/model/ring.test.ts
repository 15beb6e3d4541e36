import { describe, expect, it } from 'vitest';
import { findLast, pushTo, Ring, sliceOf, spanOf } from './ring';

describe('Ring', () => {
  it('appends into a new ring and leaves every older version exactly as it was', () => {
    const r0 = Ring.from([1, 2, 3], 5);
    const r1 = r0.push(4);
    const r2 = r1.push(5);
    expect(r1).not.toBe(r0);
    expect([...r0]).toEqual([1, 2, 3]);
    expect([...r1]).toEqual([1, 2, 3, 4]);
    expect([...r2]).toEqual([1, 2, 3, 4, 5]);
    expect(r0.at(-1)).toBe(3);
    expect(r0.at(3)).toBeUndefined();
    expect(r2.at(-1)).toBe(5);
  });

  it('drops the oldest past its capacity, and stays bounded over many pushes', () => {
    let r = Ring.from<number>([], 4);
    const kept: Ring<number>[] = [];
    for (let i = 0; i < 1000; i++) {
      r = r.push(i);
      if (i % 97 === 0) kept.push(r);
    }
    expect(r.toArray()).toEqual([996, 997, 998, 999]);
    expect(r.span().items.length).toBeLessThanOrEqual(8);
    // every version kept along the way still shows its own last four
    kept.forEach((k, j) => {
      const last = j * 97;
      expect(k.toArray()).toEqual([last - 3, last - 2, last - 1, last].filter((x) => x >= 0));
    });
  });

  it('pushing to an old version forks it: neither branch sees the other', () => {
    const base = Ring.from([1, 2], 10);
    const a = base.push(3);
    const b = base.push(30);
    expect([...a]).toEqual([1, 2, 3]);
    expect([...b]).toEqual([1, 2, 30]);
    expect([...base]).toEqual([1, 2]);
  });

  it('maps each item once per backing, aligned with the ring, whatever the versions', () => {
    let calls = 0;
    const f = (x: number) => {
      calls++;
      return x * 10;
    };
    let r = Ring.from([1, 2, 3], 100);
    expect([...r.map('x10', f)]).toEqual([10, 20, 30]);
    const old = r;
    r = r.push(4);
    expect([...r.map('x10', f)]).toEqual([10, 20, 30, 40]);
    expect([...old.map('x10', f)]).toEqual([10, 20, 30]);
    expect(calls).toBe(4);
    // a mapped ring is a view of the cache: pushing to it copies, never writes into the cache
    const m = r.map('x10', f).push(99);
    expect([...m]).toEqual([10, 20, 30, 40, 99]);
    expect([...r.push(5).map('x10', f)]).toEqual([10, 20, 30, 40, 50]);
  });

  it('folds each item once, and an unchanged accumulator keeps its identity', () => {
    const step = (acc: readonly number[], x: number) => (x % 2 === 0 ? [...acc, x] : acc);
    let r = Ring.from([1, 2, 3], 100);
    const a = r.fold('evens', [] as readonly number[], step);
    expect(a).toEqual([2]);
    r = r.push(5);
    expect(r.fold('evens', [] as readonly number[], step)).toBe(a);
    r = r.push(6);
    expect(r.fold('evens', [] as readonly number[], step)).toEqual([2, 6]);
    expect(Ring.from<number>([], 3).fold('evens', [] as readonly number[], step)).toEqual([]);
  });

  it('slices as a view, and the helpers read rings and arrays alike', () => {
    const r = Ring.from([1, 2, 3, 4, 5], 10);
    expect([...r.slice(1, 3)]).toEqual([2, 3]);
    expect([...r.slice(-2)]).toEqual([4, 5]);
    expect([...sliceOf(r, 0, 2)]).toEqual([1, 2]);
    expect(sliceOf([1, 2, 3], 1, 3)).toEqual([2, 3]);
    expect(findLast(r, (x) => x < 4)).toBe(3);
    expect(findLast([1, 2, 3], (x) => x > 5)).toBeUndefined();
    const s = spanOf(r.slice(2));
    expect(s.items.slice(s.start, s.end)).toEqual([3, 4, 5]);
    const p = pushTo([1, 2, 3], 4, 3);
    expect(p).toBeInstanceOf(Ring);
    expect([...p]).toEqual([2, 3, 4]);
    expect(() => Ring.from([], 0)).toThrow(/capacity/);
  });
});
