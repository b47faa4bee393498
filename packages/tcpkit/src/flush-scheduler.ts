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
let flushPending = false;

function flushAll(): void {
  flushPending = false;
  // A flush never makes a writer dirty again, so the list cannot grow while it is walked. Most
  // writers were flushed when their handler parked for input; those have nothing left to do here.
  for (let i = 0; i < dirtyCount; i++) {
    const writer = dirty[i]!;
    dirty[i] = null;
    writer.flushIfScheduled();
  }
  dirtyCount = 0;
}

/** Flushes `writer` at the end of this event-loop iteration (the caller schedules each writer once per batch). */
export function scheduleFlush(writer: Flushable): void {
  if (!flushPending) {
    flushPending = true;
    setImmediate(flushAll);
  }
  dirty[dirtyCount++] = writer;
}
