import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  BufferPool,
  ByteQueue,
  delimited,
  fixed,
  InvalidOptionError,
  lengthPrefixed,
  lines,
  resp,
} from '../src/index.js';
import { boolean, duration, integer, MAX_DURATION, nonEmptyString, oneOf, optionsObject } from '../src/validate.js';

/** The error every validator throws: ERR_INVALID_OPTION, `option` set, the message starting with the option's name. */
function namesOption(option: string) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof InvalidOptionError, `an InvalidOptionError, got ${String(e)}`);
    assert.equal(e.code, 'ERR_INVALID_OPTION');
    assert.equal(e.option, option);
    assert.ok(e.message.startsWith(`${option}: `), `the message starts with ${option}: ${e.message}`);
    return true;
  };
}

describe('validate', () => {
  it('integer: in range passes through, the rest is refused with the range and the value', () => {
    assert.equal(integer('n', 0, 0), 0);
    assert.equal(integer('n', 5, 1, 5), 5);
    for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '1', null, 2 ** 53]) {
      assert.throws(() => integer('n', bad, 0), namesOption('n'));
    }
    assert.throws(() => integer('n', 6, 1, 5), { message: /^n: must be an integer from 1 to 5, got 6$/ });
    assert.throws(() => integer('n', -1, 0), { message: /^n: must be an integer >= 0, got -1$/ });
  });

  it('duration: whole milliseconds from 0 to what setTimeout holds', () => {
    assert.equal(duration('d', 0), 0);
    assert.equal(duration('d', MAX_DURATION), MAX_DURATION);
    for (const bad of [-1, 0.5, MAX_DURATION + 1, '10s']) assert.throws(() => duration('d', bad), namesOption('d'));
  });

  it('boolean, oneOf, nonEmptyString', () => {
    assert.equal(boolean('b', false), false);
    assert.throws(() => boolean('b', 1), { message: /^b: must be a boolean, got 1$/ });
    assert.equal(oneOf('c', null, ['x', null]), null);
    assert.throws(() => oneOf('c', 'y', ['x', '\n', null]), { message: /^c: must be 'x', '\\n' or null, got "y"$/ });
    assert.equal(nonEmptyString('s', 'a'), 'a');
    assert.throws(() => nonEmptyString('s', ''), namesOption('s'));
  });

  it('optionsObject: an object of known keys; an unknown key is named in full', () => {
    assert.deepEqual(optionsObject('o', { a: 1 }, ['a', 'b'], '{ a: 1 }'), { a: 1 });
    assert.throws(() => optionsObject('o', [], ['a'], '{ a: 1 }'), {
      message: /^o: must be an object such as \{ a: 1 \}/,
    });
    assert.throws(() => optionsObject('o', { c: 1 }, ['a', 'b'], '{ a: 1 }'), {
      message: /^o\.c: is not a known option \(a, b\)$/,
    });
  });
});

/** [what, a construction that must be refused, the option it names] */
const CODEC_INVALID: Array<[string, () => unknown, string]> = [
  ['lines maxLength -1', () => lines({ maxLength: -1 }), 'maxLength'],
  ['lines maxLength 1.5', () => lines({ maxLength: 1.5 }), 'maxLength'],
  ['lines maxLength "1"', () => lines({ maxLength: '1' as unknown as number }), 'maxLength'],
  ['lines delimiter', () => lines({ delimiter: '\r' as '\n' }), 'delimiter'],
  ['lines encoding', () => lines({ encoding: 'ascii' as 'utf8' }), 'encoding'],
  ['lines validateUtf8', () => lines({ validateUtf8: 1 as unknown as boolean }), 'validateUtf8'],
  ['lines validateUtf8 with latin1', () => lines({ validateUtf8: true, encoding: 'latin1' }), 'validateUtf8'],
  ['delimited no options', () => delimited(undefined as never), 'delimiter'],
  ['delimited empty delimiter', () => delimited({ delimiter: '' }), 'delimiter'],
  ['delimited delimiter 5', () => delimited({ delimiter: 5 as unknown as string }), 'delimiter'],
  ['delimited maxLength', () => delimited({ delimiter: ';', maxLength: -1 }), 'maxLength'],
  [
    'delimited keepDelimiter',
    () => delimited({ delimiter: ';', keepDelimiter: 1 as unknown as boolean }),
    'keepDelimiter',
  ],
  ['lengthPrefixed width', () => lengthPrefixed({ width: 5 as 4 }), 'width'],
  ['lengthPrefixed endian', () => lengthPrefixed({ endian: 'middle' as 'big' }), 'endian'],
  ['lengthPrefixed headerOffset -1', () => lengthPrefixed({ headerOffset: -1 }), 'headerOffset'],
  ['lengthPrefixed headerOffset 65537', () => lengthPrefixed({ headerOffset: 65537 }), 'headerOffset'],
  [
    'lengthPrefixed lengthIncludesHeader',
    () => lengthPrefixed({ lengthIncludesHeader: 1 as unknown as boolean }),
    'lengthIncludesHeader',
  ],
  ['lengthPrefixed lengthAdjustment 2^33', () => lengthPrefixed({ lengthAdjustment: 2 ** 33 }), 'lengthAdjustment'],
  ['lengthPrefixed lengthAdjustment 0.5', () => lengthPrefixed({ lengthAdjustment: 0.5 }), 'lengthAdjustment'],
  ['lengthPrefixed maxLength', () => lengthPrefixed({ maxLength: -1 }), 'maxLength'],
  ['lengthPrefixed stripHeader', () => lengthPrefixed({ stripHeader: 'no' as unknown as boolean }), 'stripHeader'],
  ['fixed 0', () => fixed(0), 'size'],
  ['fixed 1.5', () => fixed(1.5), 'size'],
  ['fixed 2^31 + 1', () => fixed(2 ** 31 + 1), 'size'],
  ['resp maxBulkLength', () => resp({ maxBulkLength: 0 }), 'maxBulkLength'],
  ['resp maxInlineLength', () => resp({ maxInlineLength: -1 }), 'maxInlineLength'],
  ['resp maxArrayLength', () => resp({ maxArrayLength: 1.5 }), 'maxArrayLength'],
  ['resp maxLength', () => resp({ maxLength: 0 }), 'maxLength'],
  ['BufferPool minSize not a power of two', () => new BufferPool({ minSize: 3 }), 'minSize'],
  ['BufferPool maxSize 0', () => new BufferPool({ maxSize: 0 }), 'maxSize'],
  ['BufferPool maxSize below minSize', () => new BufferPool({ minSize: 512, maxSize: 256 }), 'maxSize'],
  ['BufferPool maxPooledBytes', () => new BufferPool({ maxPooledBytes: -1 }), 'maxPooledBytes'],
  ['ByteQueue coalesceMax', () => new ByteQueue(undefined, { coalesceMax: -1 }), 'coalesceMax'],
];

describe('codec and buffer options: every bad value is refused, naming the option', () => {
  for (const [what, make, option] of CODEC_INVALID) {
    it(what, () => assert.throws(make, namesOption(option)));
  }
});
