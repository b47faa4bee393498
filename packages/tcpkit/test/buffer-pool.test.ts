import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BufferPool } from '../src/buffer-pool.js';
import { InvalidOptionError } from '../src/errors.js';

describe('BufferPool#acquire', () => {
  const cases: Array<[string, number, number]> = [
    // name, requested size, length of the buffer returned (min 256, max 65536)
    ['below the smallest class', 1, 256],
    ['exactly a class', 256, 256],
    ['just above a class', 257, 512],
    ['the largest class', 65536, 65536],
    ['above the largest class: exact size, not pooled', 65537, 65537],
  ];
  for (const [name, size, length] of cases) {
    it(name, () => assert.equal(new BufferPool().acquire(size).length, length));
  }

  it('reuses a released buffer of the same class', () => {
    const pool = new BufferPool();
    const a = pool.acquire(300);
    pool.release(a);
    assert.equal(pool.pooledBytes, 512);
    assert.equal(pool.acquire(400), a, 'a hit: the released buffer');
    assert.equal(pool.pooledBytes, 0);
    const b = pool.acquire(400);
    assert.notEqual(b, a, 'a miss: the class is empty, a new buffer');
    assert.equal(b.length, 512);
  });
});

describe('BufferPool#release', () => {
  it('ignores buffers that are not one of its classes', () => {
    const pool = new BufferPool();
    pool.release(Buffer.alloc(300));
    pool.release(Buffer.alloc(128));
    pool.release(Buffer.alloc(131072));
    assert.equal(pool.pooledBytes, 0);
  });

  it('keeps at most maxPooledBytes', () => {
    const pool = new BufferPool({ maxPooledBytes: 1024 });
    const bufs = [pool.acquire(512), pool.acquire(512), pool.acquire(512)];
    for (const b of bufs) pool.release(b);
    assert.equal(pool.pooledBytes, 1024);
  });
});

describe('BufferPool options', () => {
  const bad: Array<[string, ConstructorParameters<typeof BufferPool>[0]]> = [
    ['minSize', { minSize: 300 }],
    ['maxSize', { maxSize: 0 }],
    ['maxSize', { minSize: 1024, maxSize: 512 }],
    ['maxPooledBytes', { maxPooledBytes: -1 }],
  ];
  for (const [option, options] of bad) {
    it(`rejects ${JSON.stringify(options)} naming ${option}`, () => {
      assert.throws(
        () => new BufferPool(options),
        (error: unknown) => error instanceof InvalidOptionError && error.option === option,
      );
    });
  }
});
