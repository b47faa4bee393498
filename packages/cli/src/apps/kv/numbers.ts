/** A signed 64-bit integer: a number while it is a safe integer, a bigint beyond. */
export type Int64 = number | bigint;

export const INT64_MAX = 9223372036854775807n;
export const INT64_MIN = -9223372036854775808n;

/**
 * Redis's string2ll: an optional '-', digits without a leading zero (or a lone "0"), no '+',
 * no blanks, at most 20 characters, within the signed 64-bit range. Anything else (which Redis
 * answers with "value is not an integer or out of range") gives undefined.
 */
export function parseInt64(bytes: Uint8Array): Int64 | undefined {
  const len = bytes.length;
  if (len === 0 || len >= 21) return undefined;
  let i = 0;
  const negative = bytes[0] === 0x2d;
  if (negative && ++i === len) return undefined;
  const lead = bytes[i]!;
  if (lead === 0x30) return len === 1 ? 0 : undefined;
  if (lead < 0x31 || lead > 0x39) return undefined;
  let value = 0;
  for (; i < len; i++) {
    const c = bytes[i]!;
    if (c < 0x30 || c > 0x39) return undefined;
    value = value * 10 + (c - 0x30);
  }
  if (value <= Number.MAX_SAFE_INTEGER) return negative ? -value : value;
  // Beyond 2^53 the float above is inexact: redo it exactly.
  const exact = BigInt(Buffer.from(bytes.buffer, bytes.byteOffset, len).toString('latin1'));
  return exact > INT64_MAX || exact < INT64_MIN ? undefined : exact;
}

/** `a + b`, or undefined when the sum leaves the signed 64-bit range (Redis refuses to wrap). */
export function addInt64(a: Int64, b: Int64): Int64 | undefined {
  if (typeof a === 'number' && typeof b === 'number') {
    const sum = a + b;
    if (Number.isSafeInteger(sum)) return sum;
  }
  const exact = BigInt(a) + BigInt(b);
  if (exact > INT64_MAX || exact < INT64_MIN) return undefined;
  return exact >= BigInt(Number.MIN_SAFE_INTEGER) && exact <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(exact) : exact;
}
