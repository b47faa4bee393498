#!/usr/bin/env python3
"""User-space instructions per echo message, counted by valgrind (callgrind), for servers side by side.

On a machine shared with other work, CPU time per message moves by 10 to 20 % from run to run; an
instruction count does not (two runs agree within about 0.5 %), so a change of a few percent in the
JavaScript on the hot path can be seen. It counts user-space instructions only (not the kernel's
share of each read and write, which is the same for every server) and instructions are not time (cache
misses, branch mispredictions): confirm a win with CPU time (compare.py) before calling it one.

Each server runs under `valgrind --tool=callgrind` with instrumentation off; a client (this script)
opens the connections, runs WARM ping-pongs per connection, switches instrumentation on
(`callgrind_control -i on`), runs MSGS more, switches it off and dumps. Needs valgrind.

  python3 bench/instructions.py --conns 100 --msgs 300 \\
    'before=node /tmp/before/packages/cli/dist/main.js serve echo --idle-timeout 0 --first-byte-timeout 0 --port PORT' \\
    'after=node packages/cli/dist/main.js serve echo --idle-timeout 0 --first-byte-timeout 0 --port PORT' \\
    'plain=node --import tsx bench/plain-echo.ts PORT 127.0.0.1'
(PORT is replaced by a free port; tcpkit listens on 127.0.0.1 by default.) --size and --depth (messages
sent at once per connection) as in compare.py.

Other protocols: --send is the message (Python escapes, instead of --size bytes of 'x'), --reply the bytes
each message is answered with (default: the message's length, an echo), --setup a request sent once on one
connection before the warm-up and --setup-reply its answer's length. The kv app, GET of a 3-byte value,
16 requests pipelined:

  python3 bench/instructions.py --depth 16 --conns 50 \\
    --setup '*3\\r\\n$3\\r\\nSET\\r\\n$1\\r\\nk\\r\\n$3\\r\\nxxx\\r\\n' --setup-reply 5 \\
    --send '*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n' --reply 9 \\
    'kv=node packages/cli/dist/main.js serve kv --port PORT' 'redis=redis-server --port PORT --save ""'
"""
import argparse, selectors, shlex, socket, sys, tempfile

from callgrind_server import counting, free_port, start, total

ap = argparse.ArgumentParser()
ap.add_argument('--conns', type=int, default=100)
ap.add_argument('--warm', type=int, default=300, help='ping-pongs per connection before counting')
ap.add_argument('--msgs', type=int, default=300, help='ping-pongs per connection counted')
ap.add_argument('--size', type=int, default=64)
ap.add_argument('--depth', type=int, default=1)
ap.add_argument('--send', help='the message, with Python escapes (default: --size bytes of x)')
ap.add_argument('--reply', type=int, help='bytes of the answer to each message (default: an echo)')
ap.add_argument('--setup', help='a request sent once, on one connection, before the warm-up (Python escapes)')
ap.add_argument('--setup-reply', type=int, default=0, help="bytes of the setup request's answer")
ap.add_argument('servers', nargs='+', help='name=command, PORT in the command replaced by the port')
args = ap.parse_args()


def unescape(text):
    return text.encode('latin1').decode('unicode_escape').encode('latin1')


MESSAGE = unescape(args.send) if args.send is not None else b'x' * args.size
REPLY = len(MESSAGE) if args.reply is None else args.reply


def rounds(socks, n, payload, answer):
    """n rounds on every socket: send payload (depth messages), wait for answer bytes back."""
    sel = selectors.DefaultSelector()
    state = {}
    for s in socks:
        s.send(payload)
        state[s] = [n, 0]
        sel.register(s, selectors.EVENT_READ)
    active = len(socks)
    while active:
        events = sel.select(60)
        if not events:
            sys.exit('no echo for 60 s')
        for key, _ in events:
            s = key.fileobj
            data = s.recv(1 << 16)
            if not data:
                sys.exit('the server closed a connection')
            st = state[s]
            st[1] += len(data)
            while st[1] >= answer:
                st[1] -= answer
                st[0] -= 1
                if st[0] > 0:
                    s.send(payload)
                else:
                    sel.unregister(s)
                    active -= 1
    sel.close()


def measure(name, command):
    port = free_port()
    out = tempfile.mkdtemp(prefix=f'instr-{name}-')
    p = start(name, shlex.split(command.replace('PORT', str(port))), out, port)
    try:
        socks = []
        for _ in range(args.conns):
            s = socket.create_connection(('127.0.0.1', port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            socks.append(s)
        if args.setup is not None:
            rounds(socks[:1], 1, unescape(args.setup), args.setup_reply)
        payload = MESSAGE * args.depth
        rounds(socks, args.warm, payload, REPLY * args.depth)
        counting(p, True)
        rounds(socks, args.msgs, payload, REPLY * args.depth)
        counting(p, False)
        for s in socks:
            s.close()
    finally:
        p.terminate()
        p.wait()
    return total(out) / (args.conns * args.msgs * args.depth)


results = {}
for spec in args.servers:
    name, command = spec.split('=', 1)
    results[name] = measure(name, command)
    print(f'{name}: {results[name]:.0f} instructions/msg', flush=True)
first = next(iter(results))
size = f'{args.size} B' if args.send is None else f'{len(MESSAGE)} B requests'
print(f'{args.conns} conns, {size}, depth {args.depth}: ' +
      ', '.join(f'{n} {v:.0f} ({v / results[first]:.2f}x {first})' for n, v in results.items()))
