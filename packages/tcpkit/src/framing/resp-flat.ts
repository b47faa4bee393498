import type { ByteQueue } from '../byte-queue.js';

// The RESP decoder's fast path: a complete, well-formed multibulk request lying in one chunk (what a
// pipelining client's reads almost always hold) parsed by indexing the chunk directly, without the
// queue's cross-chunk peeks. Anything else is left to the full parser, which owns every error message.

const CR = 0x0d;
const DOLLAR = 0x24; // '$'
const ZERO = 0x30;
const NINE = 0x39;

/** Longest count or length this path reads (9 digits); longer ones, and every error, take the full parser. */
const MAX_DIGITS = 9;

/** The limits the full parser enforces; the fast path declines whatever would reach one of them. */
export interface FlatLimits {
  readonly maxInlineLength: number;
  readonly maxArrayLength: number;
  readonly maxBulkLength: number;
  readonly maxLength: number;
}

/** Where the number parsed by {@link readCount} ended (the offset of its CR); set by each call. */
let numberEnd = 0;

/**
 * The decimal at `at` (no sign, no leading zero except "0" itself, at most 9 digits) if a CR follows
 * it within `end`; -1 otherwise. Sets {@link numberEnd} to the CR's offset.
 */
function readCount(chunk: Buffer, at: number, end: number): number {
  let i = at;
  let value = 0;
  // A 10th digit stops the loop on a digit, not a CR: declined (no count of 10 digits reaches `new Array`).
  const stop = Math.min(end, at + MAX_DIGITS);
  for (; i < stop; i++) {
    const c = chunk[i]!;
    if (c < ZERO || c > NINE) break;
    value = value * 10 + (c - ZERO);
  }
  const digits = i - at;
  if (digits === 0 || i >= end || chunk[i] !== CR) return -1;
  if (digits > 1 && chunk[at] === ZERO) return -1;
  numberEnd = i;
  return value;
}

/**
 * Decodes the multibulk request at `chunk[base]` (a `*`), `queue` holding its `length` bytes all in
 * `chunk` from `base`. Returns the arguments (views of `chunk`) and consumes the request, or returns
 * `undefined` and consumes nothing when the request is incomplete, malformed, empty or near a limit:
 * the full parser then decides, with its exact Redis behaviour and messages.
 */
export function decodeFlatMultibulk(
  queue: ByteQueue,
  chunk: Buffer,
  base: number,
  length: number,
  limits: FlatLimits,
): Buffer[] | undefined {
  const end = base + length;
  const count = readCount(chunk, base + 1, end);
  // Empty requests (*0) and over-limit counts are rare: the full parser handles them.
  if (count <= 0 || count > limits.maxArrayLength || numberEnd - base > limits.maxInlineLength) return undefined;
  let at = numberEnd + 2;
  // Each argument takes at least 6 bytes ("$0\r\n" and the 2 after its body): a count the chunk cannot
  // hold is an incomplete request, declined before its array is made (a 10-byte "*1000000\r\n" must not
  // cost an 8 MB allocation per read).
  if (end - at < count * 6) return undefined;
  const args = new Array<Buffer>(count);
  for (let k = 0; k < count; k++) {
    if (at >= end || chunk[at] !== DOLLAR) return undefined;
    const bulk = readCount(chunk, at + 1, end);
    if (bulk < 0 || bulk > limits.maxBulkLength || numberEnd - at > limits.maxInlineLength) return undefined;
    const body = numberEnd + 2;
    // As the full parser (and Redis), the two bytes after a header's CR and after a body are not checked.
    const next = body + bulk + 2;
    if (next > end || next - base > limits.maxLength) return undefined;
    args[k] = chunk.subarray(body, body + bulk);
    at = next;
  }
  queue.skip(at - base);
  return args;
}
