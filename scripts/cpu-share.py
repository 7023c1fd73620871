#!/usr/bin/env python3
"""CPU seconds per process kind, and Redis's own per-command counters, over one command.

    scripts/cpu-share.py [--redis-url redis://127.0.0.1:6379] -- COMMAND ARGS...

Runs COMMAND (e.g. `scripts/load-test.sh --spawn ...`) while sampling, every 0.2 s, the CPU
time (user + system, /proc/PID/stat) of every process whose name is mcp-gateway,
mcp-loadtest, floor_server, redis-server or postgres (a process that starts and ends within
the run counts up to its last sample), and prints the CPU seconds of each kind. Before and
after, it reads `INFO commandstats` of the Redis at --redis-url and prints the calls and
server microseconds of each command the run added (Redis's own CPU per command, which the
machine's load moves far less than wall time). Other users of the same servers count too:
run it on a quiet machine.
"""
import argparse, os, re, subprocess, sys, threading, time

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
ap.add_argument("command", nargs=argparse.REMAINDER)
args = ap.parse_args()
cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
KINDS = ("mcp-gateway", "mcp-loadtest", "floor_server", "redis-server", "postgres")
TICK = os.sysconf("SC_CLK_TCK")

def cpu_by_pid():
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            raw = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        if comm not in KINDS:
            continue
        f = raw[raw.rindex(")") + 2:].split()
        out[int(pid)] = (comm, (int(f[11]) + int(f[12])) / TICK)
    return out

def commandstats():
    info = subprocess.run(["redis-cli", "-u", args.redis_url, "INFO", "commandstats"],
                          capture_output=True, text=True).stdout
    stats = {}
    for m in re.finditer(r"cmdstat_(\S+):calls=(\d+),usec=(\d+)", info):
        stats[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return stats

first, last, stop = cpu_by_pid(), {}, threading.Event()
def sample():
    while not stop.is_set():
        for pid, v in cpu_by_pid().items():
            last[pid] = v
        time.sleep(0.2)

before = commandstats()
t = threading.Thread(target=sample); t.start()
started = time.time()
rc = subprocess.call(cmd)
took = time.time() - started
stop.set(); t.join()
for pid, v in cpu_by_pid().items():
    last[pid] = v
after = commandstats()

by_kind = {}
for pid, (comm, cpu) in last.items():
    base = first.get(pid, (comm, 0.0))[1] if first.get(pid, (None,))[0] == comm else 0.0
    by_kind[comm] = by_kind.get(comm, 0.0) + cpu - base
print(f"# cpu-share: {took:.1f} s wall, exit {rc}")
for k in KINDS:
    if k in by_kind:
        print(f"cpu_seconds {k:<13} {by_kind[k]:8.2f}")
for name, (calls, usec) in sorted(after.items()):
    c0, u0 = before.get(name, (0, 0))
    if calls - c0 > 0:
        print(f"redis {name:<12} calls {calls - c0:>9} usec {usec - u0:>10} usec/call {(usec - u0) / (calls - c0):6.2f}")
sys.exit(rc)
