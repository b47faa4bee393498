/**
 * When queued writes leave (Netty's "flush at read complete"): a handler's writes are held until it
 * next waits for input (ConnReader#park flushes them, synchronously) or until it settles, so
 * everything it wrote in answer to one read — every reply to a pipelined batch, a header and a body —
 * leaves in one syscall, and a request/response handler pays for no scheduling at all. Writes not
 * followed by a read (a server push from a timer, a handler awaiting something else) are flushed by
 * one setImmediate per event-loop iteration shared by every connection. (A process.nextTick per write
 * batch cost about 0.1 of the plain server's CPU per message in 64-byte ping-pong.)
 */

/** A writer with output waiting for the scheduler. */
export interface Flushable {
  /** Hands out what is queued, unless the writer flushed since it was scheduled (the handler parked). */
  flushIfScheduled(): void;
}

// A reused array and a count rather than a fresh array per iteration.
const dirty: (Flushable | null)[] = [];
let dirtyCount = 0;
/**
 * The writer scheduled last, kept apart from the list: a request/response handler writes, then parks for
 * its next input, which flushes the writer and takes it back off (unscheduleFlush). So in the common case
 * a reply stores and clears this one slot, and the list stays empty for the iteration's end to walk
 * (about 200 instructions a message in 64-byte ping-pong, when every reply was put on the list).
 */
let last: Flushable | null = null;
let flushPending = false;

function flushAll(): void {
  flushPending = false;
  // A flush never makes a writer dirty again, so the list cannot grow while it is walked. Writers whose
  // handler flushed them when it parked after they were listed have nothing left to do here.
  for (let i = 0; i < dirtyCount; i++) {
    const writer = dirty[i]!;
    dirty[i] = null;
    writer.flushIfScheduled();
  }
  dirtyCount = 0;
  const writer = last;
  last = null;
  writer?.flushIfScheduled();
}

/** Flushes `writer` at the end of this event-loop iteration (the caller schedules each writer once per batch). */
export function scheduleFlush(writer: Flushable): void {
  if (!flushPending) {
    flushPending = true;
    setImmediate(flushAll);
  }
  if (last !== null) dirty[dirtyCount++] = last;
  last = writer;
}

/** `writer` is flushing by itself (its handler waits for input, or ends): the iteration's end need not visit it. */
export function unscheduleFlush(writer: Flushable): void {
  if (last === writer) last = null;
}
