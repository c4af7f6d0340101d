#!/usr/bin/env python3
"""Where the instructions of a hot loop go, from a QEMU instruction trace (docs/benchmarks.md,
"Profiling a hot path").

1. Build a kernel with line tables (same code, other layout than the image's):
     (cd os && CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_TARGET_DIR=target/profile \\
        cargo build --release -p kernel)
2. Boot it with that kernel under `-singlestep` (one instruction per translation block) and
   `-D exec.log`, start the loop to measure (e.g. `linux /disk/lbench getppid 1000000000`),
   then on the monitor `log exec,nochain`, a few seconds later `log none`. `--boot` does all
   this: hotpath.py --boot KERNEL ARCHIVE DISK "COMMAND" exec.log
3. hotpath.py KERNEL exec.log: finds the loop (the user address executed most often), takes a
   typical iteration (the most common length between two passes) and counts its kernel
   instructions by source line (innermost frame in the repository, or with --outer the
   outermost one of os/kernel/src/system.rs and of kcore).
"""
import collections, os, re, socket, subprocess, sys, threading, time

TRACE = re.compile(r'Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/')
KERNEL_HALF = 0xffff800000000000


def boot(kernel, archive, disk, command, log, wait_s=10.0, trace_s=2.0):
    mon = log + '.monitor'
    for p in (mon, log):
        if os.path.exists(p):
            os.remove(p)
    qemu = subprocess.Popen(
        ['qemu-system-x86_64', '-M', 'pc', '-accel', 'tcg', '-cpu', 'qemu64,+rdrand', '-m', '64M',
         '-display', 'none', '-no-reboot', '-serial', 'stdio', '-monitor', f'unix:{mon},server,nowait',
         '-singlestep', '-D', log, '-kernel', kernel, '-initrd', archive, '-append', '',
         '-drive', f'file={disk},if=none,id=d0,format=raw', '-device', 'virtio-blk-pci,drive=d0'],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = []
    threading.Thread(target=lambda: [out.append(b) for b in iter(lambda: qemu.stdout.read1(4096), b'')],
                     daemon=True).start()
    deadline = time.time() + 120
    while b'tutti:/$' not in b''.join(out):
        if time.time() > deadline:
            qemu.kill()
            sys.exit('the shell never came: ' + b''.join(out)[-2000:].decode(errors='replace'))
        time.sleep(0.2)
    qemu.stdin.write(command.encode() + b'\n')
    qemu.stdin.flush()
    time.sleep(wait_s)
    m = socket.socket(socket.AF_UNIX)
    m.connect(mon)
    time.sleep(0.3)
    m.recv(4096)
    m.send(b'log exec,nochain\n')
    time.sleep(trace_s)
    m.send(b'log none\n')
    time.sleep(0.5)
    qemu.kill()


def analyse(kernel, log, outer=False, rows=50):
    pcs = []
    with open(log) as f:
        for line in f:
            m = TRACE.match(line)
            if m:
                pcs.append(int(m.group(1), 16))
    user = collections.Counter(pc for pc in pcs if pc < KERNEL_HALF)
    if not user:
        sys.exit('no user instructions in the trace')
    start = user.most_common(1)[0][0]
    at = [i for i, pc in enumerate(pcs) if pc == start]
    lengths = collections.Counter(b - a for a, b in zip(at, at[1:]))
    typical = lengths.most_common(1)[0][0]
    first = next(a for a, b in zip(at, at[1:]) if b - a == typical)
    one = pcs[first:first + typical]
    kern = [pc for pc in one if pc >= KERNEL_HALF]
    print(f'{len(at) - 1} iterations; typical {typical} instructions ({lengths.most_common(3)}): '
          f'{len(kern)} kernel, {typical - len(kern)} user')
    unique = sorted(set(kern))
    lines = subprocess.run(['addr2line', '-e', kernel, '-i', '-a'] + [hex(p) for p in unique],
                           capture_output=True, text=True).stdout.split('\n')
    frames, cur = {}, None
    for line in lines:
        if line.startswith('0x'):
            cur = int(line, 16)
            frames[cur] = []
        elif line and cur is not None:
            frames[cur].append(re.sub(r'^.*?/(os|kcore)/', r'\1/', line))

    def key(pc):
        ours = [f for f in frames.get(pc, []) if f.startswith(('os/', 'kcore/'))]
        if not ours:
            return 'outside the repository (entry stubs, memcpy, ...)'
        if not outer:
            return ours[0]
        system = [f for f in ours if f.startswith('os/kernel/src/system.rs')]
        model = [f for f in ours if f.startswith('kcore/')]
        return (system[-1] if system else ours[-1]) + (' <- ' + model[-1] if model else '')

    for k, n in collections.Counter(key(pc) for pc in kern).most_common(rows):
        print(n, k)


if __name__ == '__main__':
    args = sys.argv[1:]
    if args[:1] == ['--boot']:
        boot(*args[1:6])
    else:
        outer = '--outer' in args
        args = [a for a in args if a != '--outer']
        analyse(args[0], args[1], outer)
