"""A server process under callgrind with instrumentation off, for bench/instructions.py and
bench/tls-instructions.py: start it, wait until it listens, switch counting on and off around the part
to count, and read the total it dumped."""
import glob, re, socket, subprocess, sys, time


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def start(name, argv, out, port):
    """Starts argv (its callgrind files in the directory out) and returns once it accepts on port."""
    cmd = ['valgrind', '--tool=callgrind', '--instr-atstart=no', '--smc-check=all-non-file', '--cache-sim=no',
           f'--callgrind-out-file={out}/cg.%p'] + argv
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            socket.create_connection(('127.0.0.1', port), timeout=0.2).close()
            return p
        except OSError:
            if p.poll() is not None:
                sys.exit(f'{name} exited before listening')
            time.sleep(0.2)
    p.terminate()
    sys.exit(f'{name} did not listen within 2 minutes')


def counting(p, on):
    subprocess.run(['callgrind_control', '-i', 'on' if on else 'off', str(p.pid)], capture_output=True, check=True)
    if not on:
        subprocess.run(['callgrind_control', '-d', str(p.pid)], capture_output=True, check=True)


def total(out):
    """Instructions counted, summed over the dumps in out (each has a totals: line)."""
    n = 0
    for f in glob.glob(f'{out}/cg.*'):
        for line in open(f):
            m = re.match(r'totals: (\d+)', line)
            if m:
                n += int(m.group(1))
    return n
