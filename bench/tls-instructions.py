#!/usr/bin/env python3
"""User-space instructions per TLS handshake (churn) or per TLS echo message, counted by valgrind
(callgrind), for servers side by side: the TLS counterpart of bench/instructions.py.

CPU time per handshake moves by 10 to 20 % between runs on the shared machine; an instruction count
moves by well under 1 %, so it tells whether a server does more work per handshake, and where
(callgrind names OpenSSL's functions, which are linked into the node binary; the JIT's code is
unnamed). Instructions are not time (cache misses, branch mispredictions, the kernel's share): confirm
with CPU time (bench/tls.ts) before calling a change a win.

Each server runs under `valgrind --tool=callgrind` with instrumentation off; this script (Python's ssl,
TLS 1.3, no certificate check, no session reuse unless `--resume`) runs the warm-up, switches instrumentation on, runs
the counted part, switches it off and dumps.
  churn: `--conns` connections at a time each connect, handshake, send `--size` bytes, read the echo
         and close, until `--count` handshakes are done (warm-up: `--warm` handshakes); with `--resume`
         each loop offers the session (ticket) of its previous connection, so nearly all are resumed;
  echo:  `--conns` connections ping-pong `--size` bytes, `--count` messages each (warm-up: `--warm`).

  npm run build && python3 bench/tls-instructions.py --mode churn --warm 3000 --count 1000 \\
    plain tcpkit=packages/tcpkit/dist/index.js before=/tmp/before/packages/tcpkit/dist/index.js
A server is `plain` (a `tls.createServer` echo, as in bench/tls.ts), `NAME=DIST` (tcpkit's TLS echo of
bench/tls.ts from that build's packages/tcpkit/dist/index.js) or `NAME=COMMAND` with PORT in it (replaced
by a free port). Both use an EC P-256 certificate made for the run. The warm-up must be long enough for
the JIT to settle: with 400 handshakes, TurboFan's compile jobs were a fifth of tcpkit's count. `--keep`
leaves the callgrind files (callgrind_annotate them to see the functions).
"""
import argparse, os, shlex, shutil, socket, ssl, subprocess, sys, tempfile, threading

from callgrind_server import counting, free_port, start, total

ap = argparse.ArgumentParser()
ap.add_argument('--mode', choices=['churn', 'echo'], default='churn')
ap.add_argument('--conns', type=int, default=4)
ap.add_argument('--warm', type=int, default=300, help='handshakes (churn) or messages per connection (echo) before counting')
ap.add_argument('--count', type=int, default=300, help='handshakes (churn) or messages per connection (echo) counted')
ap.add_argument('--size', type=int, default=64)
ap.add_argument('--resume', action='store_true', help='churn: each loop resumes its previous session (a ticket)')
ap.add_argument('--node-flag', action='append', default=[], help='a flag for node in the plain and NAME=DIST servers (repeatable), '
                'e.g. --perf-basic-prof: with --keep, cgfuncs.py then names the JIT code')
ap.add_argument('--keep', action='store_true')
ap.add_argument('servers', nargs='+', help='plain, NAME=DIST or NAME=COMMAND (PORT replaced by the port)')
args = ap.parse_args()

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
payload = os.urandom(args.size)


work = tempfile.mkdtemp(prefix='tls-instr-')
KEY, CERT = os.path.join(work, 'key.pem'), os.path.join(work, 'cert.pem')
subprocess.run(['openssl', 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', KEY], check=True)
subprocess.run(['openssl', 'req', '-x509', '-new', '-key', KEY, '-out', CERT, '-days', '1', '-subj', '/CN=localhost'],
               check=True, capture_output=True)
READ_PEM = f"const fs=require('node:fs');const key=fs.readFileSync({KEY!r}),cert=fs.readFileSync({CERT!r});"
PLAIN = (READ_PEM + "const tls=require('node:tls');const s=tls.createServer({key,cert},(c)=>{c.setNoDelay(true);"
         "c.on('data',(d)=>c.write(d));c.on('error',()=>{})});s.on('tlsClientError',()=>{});"
         "s.listen(Number(process.argv[1]),'127.0.0.1');")
TCPKIT = (READ_PEM + "import(process.argv[2]).then(({serve})=>serve({host:'127.0.0.1',port:Number(process.argv[1]),"
          "tls:{key,cert}},async(c)=>{for await(const ch of c) await c.write(ch)}));")


def server_command(spec):
    """(name, argv template) of a server spec (see the usage)."""
    if spec == 'plain':
        return 'plain', ['node', *args.node_flag, '-e', PLAIN, 'PORT']
    name, rest = spec.split('=', 1)
    if rest.endswith('.js') and ' ' not in rest:
        return name, ['node', *args.node_flag, '-e', TCPKIT, 'PORT', os.path.abspath(rest)]
    return name, shlex.split(rest)


def handshake(port, session=None):
    raw = socket.create_connection(('127.0.0.1', port), timeout=120)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(raw, session=session)


def receive_echo(s):
    got = 0
    while got < len(payload):
        data = s.recv(65536)
        if not data:
            sys.exit('the server closed a connection')
        got += len(data)


resumed = [0]


def churn(port, n):
    """n handshakes, args.conns in flight (threads: each a blocking loop); with --resume each resumes its last session."""
    left = [n]
    lock = threading.Lock()

    def loop():
        session = None
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            s = handshake(port, session)
            s.sendall(payload)
            receive_echo(s)
            if s.session_reused:
                resumed[0] += 1
            if args.resume:
                session = s.session  # the ticket came with (or before) the echo
            s.close()

    threads = [threading.Thread(target=loop) for _ in range(args.conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def echo(socks, n):
    for _ in range(n):
        for s in socks:
            s.sendall(payload)
        for s in socks:
            receive_echo(s)


def measure(name, argv):
    port = free_port()
    out = os.path.join(work, name)
    os.mkdir(out)
    p = start(name, [a.replace('PORT', str(port)) for a in argv], out, port)
    try:
        socks = []
        if args.mode == 'churn':
            churn(port, args.warm)
        else:
            socks = [handshake(port) for _ in range(args.conns)]
            echo(socks, args.warm)
        counting(p, True)
        resumed[0] = 0
        if args.mode == 'churn':
            churn(port, args.count)
            print(f'{name}: {resumed[0]} of {args.count} handshakes resumed', flush=True)
        else:
            echo(socks, args.count)
        counting(p, False)
        for s in socks:
            s.close()
    finally:
        p.terminate()
        p.wait()
    return total(out) / (args.count if args.mode == 'churn' else args.count * args.conns)


results = {}
for spec in args.servers:
    name, argv = server_command(spec)
    results[name] = measure(name, argv)
    print(f'{name}: {results[name]:.0f} instructions/{"handshake" if args.mode == "churn" else "message"}', flush=True)
first = next(iter(results))
print(f'{args.mode}, {args.conns} conns, {args.size} B: ' +
      ', '.join(f'{n} {v:.0f} ({v / results[first]:.3f}x {first})' for n, v in results.items()))
if args.keep:
    print(f'callgrind files in {work}')
else:
    shutil.rmtree(work)
