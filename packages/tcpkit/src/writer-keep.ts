/**
 * Which connections keep their writer while parked on a read. A writer costs about 260 bytes, so an
 * idle connection must not hold one; but handing it back at every park and taking one again for the next
 * reply cost a ping-pong connection about 350 instructions a message (64-byte echo, callgrind). So a
 * connection that parks keeps its writer, and a sweep every {@link KEEP_SWEEP_INTERVAL} takes it back
 * from every connection that has not parked again since the previous sweep (it was idle, or busy with
 * something other than input, for a whole interval) and holds nothing for it (see ConnWriter#release).
 * An idle connection thus holds no writer after at most two intervals.
 */

/** A writer as the sweep sees it (ConnWriter). */
export interface Keepable {
  /** Parked again since the last sweep (set by keep(), cleared by the sweep). */
  keptActive: boolean;
  /** Its index in the kept list, -1 when not kept. */
  keptAt: number;
  /** Gives the writer back if it holds nothing for its connection (calling unkeep); says whether it did. */
  letGo(): boolean;
}

/** How often, in ms, the writers of connections that stayed parked are taken back. */
export const KEEP_SWEEP_INTERVAL = 1_000;

// A list with a count: a kept writer is taken out by moving the last one into its slot.
const kept: (Keepable | null)[] = [];
let keptCount = 0;
let timer: ReturnType<typeof setTimeout> | null = null;

/** `writer`'s connection parks on a read: it keeps the writer until a sweep finds it still parked. */
export function keep(writer: Keepable): void {
  writer.keptActive = true;
  if (writer.keptAt !== -1) return;
  writer.keptAt = keptCount;
  kept[keptCount++] = writer;
  if (timer === null) scheduleSweep();
}

function scheduleSweep(): void {
  // Unreferenced: the sweep alone must not keep a process alive.
  timer = setTimeout(sweepKept, KEEP_SWEEP_INTERVAL);
  timer.unref();
}

/** `writer` is given back or its connection closed: off the list, so nothing here keeps it (or the connection) alive. */
export function unkeep(writer: Keepable): void {
  const at = writer.keptAt;
  if (at === -1) return;
  writer.keptAt = -1;
  const lastAt = --keptCount;
  const moved = kept[lastAt]!;
  kept[lastAt] = null;
  if (moved !== writer) {
    kept[at] = moved;
    moved.keptAt = at;
  }
}

/** Writers kept now (for tests). */
export function keptWriters(): number {
  return keptCount;
}

/** The sweep (run by its timer; tests call it to run one now). */
export function sweepKept(): void {
  if (timer !== null) clearTimeout(timer);
  timer = null;
  for (let i = 0; i < keptCount; ) {
    const writer = kept[i]!;
    if (writer.keptActive) {
      writer.keptActive = false;
      i++;
    } else if (!writer.letGo()) {
      i++;
    }
    // Let go: unkeep moved the last writer into slot i, which is looked at next.
  }
  if (keptCount > 0) scheduleSweep();
}
