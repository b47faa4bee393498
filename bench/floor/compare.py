#!/usr/bin/env python3
"""Side-by-side echo runs of any server commands, with the server's user / system CPU split.

A bench-only companion of bench/floor/echo.mjs (see its header). As the anchors' compare.py
(/work/shared/anchors/compare.py, whose method this is): each run starts a fresh server pinned to CPU 0 and the
anchors' compiled epoll load generator (every echoed byte verified) pinned to CPU 1; the servers alternate within
each repetition; server CPU per message is the generator's (from /proc over its measured window), the median of
the repetitions. In addition this samples the server's /proc/PID/stat (utime, stime) every 50 ms and splits that
CPU into user and system time over the last DUR - 0.5 s before the generator exits (inside its warm-up plus
measured window: both are steady ping-pong), so the kernel's share is visible per server.

  python3 bench/floor/compare.py --conns 100 --reps 3 --out /tmp/floor.jsonl \\
    'tcpkit=node /tmp/s4-final/packages/cli/dist/main.js serve echo --max-connections 200000 --idle-timeout 0 --first-byte-timeout 0 --host 127.0.0.1 --port PORT' \\
    'node=node /work/shared/anchors/servers/node-echo/raw.mjs PORT' 'go=/tmp/tcpkit-anchors/go-echo PORT' \\
    'cb=node bench/floor/echo.mjs cb PORT' 'forawait=node bench/floor/echo.mjs forawait PORT'

PORT in a command is replaced by the run's port. Prints one line per run, then a table of medians (µs/msg, user
and sys µs/msg, user share, msgs/s, and each server's ratio to the first one named `go`, if any). --out appends
one JSON line per run (with the conditions) for later pooling. Exit 1 on a failed run or an echo error.
"""
import argparse, json, os, shlex, signal, socket, subprocess, sys, threading, time

ap = argparse.ArgumentParser()
ap.add_argument('--conns', type=int, default=100)
ap.add_argument('--reps', type=int, default=3)
ap.add_argument('--dur', type=float, default=4.0, help='measured seconds (after a 1 s warm-up)')
ap.add_argument('--size', default='64')
ap.add_argument('--depth', default='1')
ap.add_argument('--bin', default='/tmp/tcpkit-anchors', help="where the anchors' setup.sh built the load generator")
ap.add_argument('--out', help='append one JSON line per run to this file')
ap.add_argument('--label', default='', help='a tag stored with each run in --out (e.g. the Node version)')
ap.add_argument('--perf-events', help='also count these perf events (e.g. syscall tracepoints) in the server for DUR - 1 s '
                'from 1.5 s after the generator starts, printed per message (perf perturbs the CPU figures: use a separate run)')
ap.add_argument('servers', nargs='+', help='name=command, PORT replaced by the port')
args = ap.parse_args()
LOADGEN = os.path.join(args.bin, 'loadgen')
if not os.path.exists(LOADGEN):
    sys.exit(f'no load generator at {LOADGEN}')
try:
    import resource
    _s, _h = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (_h, _h))
except Exception:
    pass
SERVERS = []
for spec in args.servers:
    name, _, cmd = spec.partition('=')
    if not cmd:
        sys.exit(f'not name=command: {spec}')
    SERVERS.append((name, cmd))
TICK = os.sysconf('SC_CLK_TCK')


def proc_times(pid):
    """utime, stime of pid (all threads), in seconds."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            rest = f.read().rsplit(')', 1)[1].split()
        return int(rest[11]) / TICK, int(rest[12]) / TICK
    except (OSError, IndexError, ValueError):
        return None


def up(port, proc, t=20):
    t0 = time.time()
    while time.time() - t0 < t:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(('127.0.0.1', port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


port = 24000 + os.getpid() % 5000


def run(name, cmd):
    global port
    port += 1
    env = dict(os.environ, GOMAXPROCS='1')
    argv = ['taskset', '-c', '0'] + [a.replace('PORT', str(port)) for a in shlex.split(cmd)]
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    samples = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            t = proc_times(p.pid)
            if t is not None:
                samples.append((time.time(), t[0], t[1]))
            stop.wait(0.05)

    try:
        if not up(port, p):
            return {'failed': f'{name} did not start: ' + (p.stderr.read().decode()[-300:] if p.poll() is not None else 'no listen')}
        time.sleep(0.3)
        extra = ['-size', args.size, '-duration', f'{args.dur}s', '-warmup', '1s']
        if args.depth != '1':
            extra += ['-depth', args.depth]
        if args.conns > 5000:
            extra += ['-srcips', '8', '-rampup', '3s']
        lg = ['taskset', '-c', '1', LOADGEN, '-addr', f'127.0.0.1:{port}', '-server-pid', str(p.pid), '-mode', 'echo', '-conns', str(args.conns)] + extra
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        if args.perf_events:
            g = subprocess.Popen(lg, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            time.sleep(1.5 + (3 if args.conns > 5000 else 0))
            ps = subprocess.run(['perf', 'stat', '-x', ',', '-e', args.perf_events, '-p', str(p.pid), '--', 'sleep', str(args.dur - 1)],
                                capture_output=True, text=True)
            out, err = g.communicate(timeout=180)
            r = subprocess.CompletedProcess(lg, g.returncode, out, err)
        else:
            r = subprocess.run(lg, capture_output=True, text=True, timeout=180, env=env)
        t_exit = time.time()
        stop.set()
        th.join()
        if r.returncode != 0 or not r.stdout.strip():
            return {'failed': f'loadgen rc={r.returncode} {r.stderr[-200:]}'}
        d = json.loads(r.stdout.strip().splitlines()[-1])
        if args.perf_events:
            msgs = d.get('msgs_per_s', 0) * (args.dur - 1)
            d['perf'] = {}
            for line in ps.stderr.splitlines():
                f = line.split(',')
                if len(f) > 2 and f[0].strip().isdigit():
                    d['perf'][f[2]] = int(f[0]) / msgs if msgs else float('nan')
        win = [s for s in samples if t_exit - args.dur <= s[0] <= t_exit - 0.5]
        if len(win) >= 2:
            du, ds = win[-1][1] - win[0][1], win[-1][2] - win[0][2]
            d['user_share'] = du / (du + ds) if du + ds > 0 else float('nan')
            d['split_cpu_pct'] = (du + ds) / (win[-1][0] - win[0][0]) * 100
        return d
    finally:
        stop.set()
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def cost(d):
    n = d.get('messages') or 0
    return d.get('server_cpu_pct', 0) / 100 * d.get('duration_s', 0) / n * 1e6 if n else float('nan')


def load():
    with open('/proc/loadavg') as f:
        return f.read().split()[0]


vals = {n: [] for n, _ in SERVERS}
bad = []
print(f'load average {load()} at start, {time.strftime("%H:%M:%S", time.gmtime())} UTC', flush=True)
for rep in range(args.reps):
    for name, cmd in SERVERS:
        d = run(name, cmd)
        if 'failed' in d:
            bad.append(f'{name}: {d["failed"]}')
            print(f'{name:16s} rep{rep}: FAILED {d["failed"]}', flush=True)
            continue
        e = d.get('errors', 0) + d.get('mismatches', 0)
        if e:
            bad.append(f'{name}: {e} echo errors')
        c = cost(d)
        share = d.get('user_share', float('nan'))
        vals[name].append((c, share, d.get('msgs_per_s', 0)))
        print(f'{name:16s} rep{rep}: {d.get("msgs_per_s", 0):>9.0f}/s  server {d.get("server_cpu_pct", 0):5.1f}% cpu  {c:6.2f} us/msg  user {share * 100:4.1f}%  errors {e}', flush=True)
        if 'perf' in d:
            print('    per message: ' + ', '.join(f'{k} {v:.3f}' for k, v in d['perf'].items()), flush=True)
        if args.out:
            with open(args.out, 'a') as f:
                f.write(json.dumps({'label': args.label, 'server': name, 'conns': args.conns, 'size': args.size, 'depth': args.depth,
                                    'us_per_msg': c, 'user_share': share, 'msgs_per_s': d.get('msgs_per_s', 0),
                                    'cpu_busy_pct': d.get('cpu_busy_pct'), 'perf': d.get('perf'), 'load': load(), 'at': time.time()}) + '\n')
print(f'load average {load()} at end, {time.strftime("%H:%M:%S", time.gmtime())} UTC')


def med(xs):
    xs = sorted(x for x in xs if x == x)
    return xs[len(xs) // 2] if xs else float('nan')


go = next((n for n, _ in SERVERS if n == 'go'), None)
print(f'\n{args.conns} conns, {args.size} B, depth {args.depth}, median of {args.reps} {"(" + args.label + ")" if args.label else ""}')
print('| server | µs/msg | user µs | sys µs | user share | msgs/s |' + (' ÷ go |' if go else ''))
print('|---|---:|---:|---:|---:|---:|' + ('---:|' if go else ''))
gm = med([v[0] for v in vals[go]]) if go else None
for name, _ in SERVERS:
    v = vals[name]
    c, s, r = med([x[0] for x in v]), med([x[1] for x in v]), med([x[2] for x in v])
    row = f'| {name} | {c:.2f} | {c * s:.2f} | {c * (1 - s):.2f} | {s * 100:.0f} % | {r:.0f} |'
    if go:
        row += f' {c / gm:.2f}x |'
    print(row)
if bad:
    print('problems: ' + '; '.join(bad))
    sys.exit(1)
