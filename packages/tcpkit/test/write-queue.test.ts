// The write queue (src/write-queue.ts) put back after an encoder throws: writeFrame restores the queue to
// where it stood before the frame, and the writes that follow are queued and sent as if the frame never was.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Encoder } from '../src/framing/types.js';
import { connect, withServer } from './helpers.js';

const TEST = { timeout: 20_000 };

describe('Conn#writeFrame: the queue after an encoder throws', () => {
  it('sends the small writes that follow an encoder that filled append buffers and threw', TEST, async () => {
    // Enough small pieces to fill and close append buffers (pooled) before the throw.
    const fillThenThrow: Encoder<string> = {
      encode(item, out) {
        out.push('*');
        for (let i = 0; i < 40; i++) out.push(Buffer.alloc(100, 0x61));
        throw new Error(`cannot encode ${item}`);
      },
    };
    await withServer(
      {},
      async (conn) => {
        await conn.read();
        await conn.writeFrame(fillThenThrow, 'x').catch(() => {});
        // Two small writes in one turn: the second opens an append buffer, sized from the queue's pooled ones.
        await Promise.all([conn.write(Buffer.from('-ERR ')), conn.write(Buffer.from('internal\r\n'))]);
      },
      async (port) => {
        const client = await connect(port);
        client.write('go');
        await client.waitClosed();
        assert.equal(client.received().toString(), '-ERR internal\r\n');
      },
    );
  });
});
