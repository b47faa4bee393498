/**
 * Redis's `stringmatchlen` (util.c), case-sensitive: `*`, `?`, `[abc]`, `[^a-z]`, `\` escapes.
 * Ported branch for branch, including its reads of the NUL just past the pattern (here: 0), so
 * KEYS matches exactly what Redis matches.
 */
export function globMatch(pattern: Buffer, subject: Buffer): boolean {
  return match(pattern, 0, pattern.length, subject, 0, subject.length, { skipLonger: false }, 0);
}

/**
 * Redis's "protection against abusive patterns": a match nested deeper than this (one level a `*`)
 * fails, as in Redis 7, instead of recursing once per star of a 64 KiB pattern until the stack overflows.
 */
const MAX_NESTING = 1000;

function match(
  pat: Buffer,
  p: number,
  plen: number,
  str: Buffer,
  s: number,
  slen: number,
  state: { skipLonger: boolean },
  nesting: number,
): boolean {
  if (nesting > MAX_NESTING) return false;
  const at = (i: number): number => (i < pat.length ? pat[i]! : 0);
  while (plen > 0 && slen > 0) {
    const c = at(p);
    if (c === 0x2a /* * */) {
      while (plen > 0 && at(p + 1) === 0x2a) {
        p++;
        plen--;
      }
      if (plen === 1) return true;
      while (slen > 0) {
        if (match(pat, p + 1, plen - 1, str, s, slen, state, nesting + 1)) return true;
        if (state.skipLonger) return false;
        s++;
        slen--;
      }
      // No match for the rest of the pattern from anywhere in the rest of the string: earlier
      // stars cannot help either (Redis's skipLongerMatches, which keeps `*a*a*a*b` linear).
      state.skipLonger = true;
      return false;
    }
    if (c === 0x3f /* ? */) {
      s++;
      slen--;
    } else if (c === 0x5b /* [ */) {
      p++;
      plen--;
      const not = at(p) === 0x5e; /* ^ */
      if (not) {
        p++;
        plen--;
      }
      let matched = false;
      for (;;) {
        if (at(p) === 0x5c && plen >= 2) {
          p++;
          plen--;
          if (at(p) === str[s]) matched = true;
        } else if (at(p) === 0x5d /* ] */) {
          break;
        } else if (plen === 0) {
          p--;
          plen++;
          break;
        } else if (plen >= 3 && at(p + 1) === 0x2d /* - */) {
          let start = at(p);
          let end = at(p + 2);
          if (start > end) [start, end] = [end, start];
          p += 2;
          plen -= 2;
          const ch = str[s]!;
          if (ch >= start && ch <= end) matched = true;
        } else if (at(p) === str[s]) {
          matched = true;
        }
        p++;
        plen--;
      }
      if (not) matched = !matched;
      if (!matched) return false;
      s++;
      slen--;
    } else {
      if (c === 0x5c /* \ */ && plen >= 2) {
        p++;
        plen--;
      }
      if (at(p) !== str[s]) return false;
      s++;
      slen--;
    }
    p++;
    plen--;
    if (slen === 0) {
      while (at(p) === 0x2a) {
        p++;
        plen--;
      }
      break;
    }
  }
  return plen === 0 && slen === 0;
}
