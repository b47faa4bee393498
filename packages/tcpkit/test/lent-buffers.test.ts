// The free list of lent read buffers (src/lent-buffers.ts): size classes, reuse of the buffer and its
// chunk object, and a buffer a writer still holds never handed out again.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type CallerBufferHolder,
  giveBack,
  holdLent,
  type LentBuffer,
  lendCopy,
  noteHeld,
} from '../src/lent-buffers.js';
import { pseudoRandom } from './helpers.js';

const source = pseudoRandom(64 * 1024, 3);

/** A writer stand-in whose holding is set by the test; it records what it was asked. */
class Holder implements CallerBufferHolder {
  holds = true;
  asked: LentBuffer[] = [];
  holdsCallerBuffers(lent: LentBuffer): boolean {
    this.asked.push(lent);
    return this.holds;
  }
}

describe('lent buffers', () => {
  it('copies the first n bytes of the source, for every size up to 64 KiB', () => {
    for (const n of [1, 63, 64, 65, 1000, 4096, 4097, 16_384, 65_535, 65_536]) {
      const lent = lendCopy(source, n);
      assert.equal(lent.view.length, n);
      assert.ok(lent.view.equals(source.subarray(0, n)), `${n} bytes`);
      assert.ok(lent.whole.length >= n && lent.whole.length < 2 * n + 64, `class of ${n}: ${lent.whole.length}`);
      giveBack(lent);
    }
  });

  it('hands the same buffer and chunk object out again for a read of the same length', () => {
    const a = lendCopy(source, 4096);
    const view = a.view;
    giveBack(a);
    const b = lendCopy(source.subarray(100), 4096);
    assert.equal(b, a);
    assert.equal(b.view, view, 'the chunk object is reused');
    assert.ok(b.view.equals(source.subarray(100, 4196)), 'with the new bytes');
    giveBack(b);
    const c = lendCopy(source, 3000);
    assert.equal(c, a, 'the same class, another length');
    assert.equal(c.view.length, 3000);
    giveBack(c);
  });

  it('never hands out a buffer that a writer still held when it came back', () => {
    const holder = new Holder();
    const a = lendCopy(source, 8192);
    // As a writer reports a chunk it keeps by reference (conn-writer.ts): here a view of it.
    noteHeld(a.view.subarray(10, 20), holder);
    const kept = Buffer.from(a.view);
    giveBack(a);
    holder.holds = false; // its write completes later: the buffer stays out of reuse anyway
    for (let i = 0; i < 8; i++) {
      const b = lendCopy(pseudoRandom(8192, 100 + i), 8192);
      assert.notEqual(b, a);
      giveBack(b);
    }
    assert.ok(a.view.equals(kept), 'its bytes were never overwritten');
  });

  it('takes back a buffer whose writer no longer holds caller memory', () => {
    const holder = new Holder();
    holder.holds = false;
    const a = lendCopy(source, 2048);
    noteHeld(a.view, holder);
    giveBack(a);
    assert.equal(lendCopy(source, 2048), a);
  });

  it('holdLent recognizes the chunk lent last, still lent, and nothing else', () => {
    const holder = new Holder();
    holder.holds = false;
    const a = lendCopy(source, 100);
    assert.equal(holdLent(Buffer.from(a.view), holder), false, 'a copy is not lent');
    assert.equal(holdLent(a.view.subarray(0, 50), holder), false, 'a view is not recognized (it is copied)');
    assert.equal(a.holder, null);
    assert.equal(holdLent(a.view, holder), true);
    assert.equal(a.holder, holder);
    const b = lendCopy(source, 200);
    assert.equal(holdLent(a.view, holder), false, 'a chunk lent before the last one is copied');
    giveBack(b);
    assert.equal(holdLent(b.view, holder), false, 'a chunk given back is no longer lent');
    giveBack(a);
    assert.deepEqual(holder.asked, [a], 'the holder was asked whether it still holds the buffer');
    assert.equal(a.holder, null, 'taken back: no holder any more');
    assert.equal(lendCopy(source, 100), a, 'and reused');
    giveBack(a);
  });

  it('a lent chunk held by two writers is never reused, whatever either says', () => {
    const one = new Holder();
    const two = new Holder();
    one.holds = two.holds = false;
    const a = lendCopy(source, 300);
    const kept = Buffer.from(a.view);
    assert.ok(holdLent(a.view, one));
    assert.ok(holdLent(a.view, two));
    giveBack(a);
    for (let i = 0; i < 8; i++) {
      const b = lendCopy(pseudoRandom(300, 200 + i), 300);
      assert.notEqual(b, a);
      giveBack(b);
    }
    assert.ok(a.view.equals(kept), 'its bytes were never overwritten');
  });

  it('keeps a bounded number of free buffers per class', () => {
    const out = Array.from({ length: 10 }, () => lendCopy(source, 65_536));
    for (const lent of out) giveBack(lent);
    const again = new Set(Array.from({ length: 10 }, () => lendCopy(source, 65_536)));
    const reused = out.filter((lent) => again.has(lent)).length;
    assert.equal(reused, 2, 'two free 64 KiB buffers are kept (128 KiB per class)');
  });
});
