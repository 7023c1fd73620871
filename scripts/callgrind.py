#!/usr/bin/env python3
"""CPU instructions per request of the gateway (issue #19), with valgrind's callgrind: the
number that a noisy, shared machine does not move.

    scripts/callgrind.py [--embedded] [--n 1000] [--bin target/release/mcp-gateway] [--out DIR]
                         [--top 25] [--run-sync]

Starts the gateway binary under `valgrind --tool=callgrind --dump-instr=no` (deployed mode: a
fresh database `mcp_callgrind_<id>` on PG_URL, default postgres://postgres@127.0.0.1:5432, and
a fresh key prefix `callgrind-<id>:` on REDIS_URL, default redis://127.0.0.1:6379, both
removed afterwards; `--embedded`: a fresh DATA_DIR, no Postgres, no Redis). Then, for each of
`file_read` (a 4 KiB file, hot), `log_step` (a ~200 B step) and `file_write` (4 KiB, the
same path each time), and with `--tools claim_release` a `claim_file` + `release_file` pair of
one path (a request there is the pair: a new grant with its fence, then its release), over one keep-alive HTTP/1.1 connection, one request at a time:

  1. a warm-up of N/5 requests (caches, lazily built state, connection pools);
  2. `callgrind_control --zero PID`;
  3. N requests;
  4. `callgrind_control --dump PID`: the dump holds exactly what the process executed while
     the N requests were served (start-up, set-up and warm-up are excluded).

It prints instructions (`Ir`) per request for each tool and keeps each dump in --out (default
a fresh /tmp directory), with its `callgrind_annotate` top list (self cost per function) in
`<tool>.top.txt`. An idle interval (zero, 3 s of nothing, dump) is measured too, so that the
background work (timers, and with the sync loops in the process their polling) can be told
apart from the requests': it is printed per second and per request.

In the deployed mode the sync loops are off (`RUN_SYNC=false`: they are the `mcp-sync`
process's cost, which a deployment may run elsewhere) unless `--run-sync`; the embedded mode
always runs them in the process (its `log_step` is answered after the step's commit).
The gateway runs with its defaults otherwise (authentication off, access log on, RUST_LOG=warn).
"""
import argparse, glob, http.client, json, os, re, shutil, socket, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--embedded", action="store_true")
ap.add_argument("--n", type=int, default=1000, help="measured requests per tool")
ap.add_argument("--bin", default="target/release/mcp-gateway")
ap.add_argument("--out", default=None)
ap.add_argument("--top", type=int, default=25, help="functions kept in each top list")
ap.add_argument("--run-sync", action="store_true", help="deployed mode: keep the sync loops in")
ap.add_argument("--tools", default="file_read,log_step,file_write",
                help="comma-separated: file_read, log_step, file_write, claim_release")
args = ap.parse_args()

out = args.out or tempfile.mkdtemp(prefix="mcp-callgrind.")
os.makedirs(out, exist_ok=True)
binary = os.path.join(out, "mcp-gateway")
shutil.copy(args.bin, binary)  # a private copy: another build may replace the original

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

run_id = os.urandom(4).hex()
pg = os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432")
redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
port = free_port()
env = dict(os.environ, MCP_GATEWAY_HOST="127.0.0.1", MCP_GATEWAY_PORT=str(port),
           RUST_LOG=os.environ.get("RUST_LOG", "warn"), RATE_LIMIT_REQUESTS="1000000000")
db = prefix = data_dir = None
if args.embedded:
    data_dir = tempfile.mkdtemp(prefix="mcp-callgrind-data.")
    env.pop("DATABASE_URL", None); env.pop("REDIS_URL", None)
    env["DATA_DIR"] = data_dir
    mode = "embedded"
else:
    db, prefix = f"mcp_callgrind_{run_id}", f"callgrind-{run_id}:"
    subprocess.run(["psql", "-q", f"{pg}/postgres", "-c", f"CREATE DATABASE {db}"], check=True)
    env.update(DATABASE_URL=f"{pg}/{db}", REDIS_URL=redis_url, REDIS_KEY_PREFIX=prefix,
               RUN_SYNC="true" if args.run_sync else "false")
    mode = "deployed" + (" (sync loops in)" if args.run_sync else " (RUN_SYNC=false)")

cg_out = os.path.join(out, "callgrind.out")
gw = subprocess.Popen(["valgrind", "--tool=callgrind", "--dump-instr=no",
                       f"--callgrind-out-file={cg_out}", binary],
                      env=env, stdout=subprocess.DEVNULL,
                      stderr=open(os.path.join(out, "valgrind.log"), "w"))

def cleanup():
    if gw.poll() is None:
        gw.terminate()
        try: gw.wait(60)
        except subprocess.TimeoutExpired: gw.kill(); gw.wait()
    if data_dir: shutil.rmtree(data_dir, ignore_errors=True)
    if db:
        subprocess.run(["psql", "-q", f"{pg}/postgres", "-c",
                        f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"], capture_output=True)
    if prefix:
        keys = subprocess.run(["redis-cli", "-u", redis_url, "--scan", "--pattern", prefix + "*"],
                              capture_output=True, text=True).stdout.split()
        for i in range(0, len(keys), 500):
            subprocess.run(["redis-cli", "-u", redis_url, "del", *keys[i:i + 500]], capture_output=True)

conn = None
def call(path, body):
    global conn
    data = json.dumps(body).encode()
    for attempt in range(2):
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            conn.request("POST", path, data, {"Content-Type": "application/json"})
            r = conn.getresponse(); payload = r.read()
            return r.status, payload
        except (ConnectionError, http.client.HTTPException):
            conn = None
            if attempt: raise

def control(*flags):
    subprocess.run(["callgrind_control", *flags, str(gw.pid)], check=True, capture_output=True)

dumps_seen = set()
def dump(label):
    """Dumps the counters; returns (the dump file, its total Ir)."""
    before = set(glob.glob(cg_out + ".*"))
    control(f"--dump={label}")
    for _ in range(600):
        new = sorted(set(glob.glob(cg_out + ".*")) - before - dumps_seen)
        if new:
            f = new[-1]
            time.sleep(0.2)  # let the file be written
            for line in open(f):
                if line.startswith(("summary:", "totals:")):
                    dumps_seen.add(f)
                    return f, int(line.split()[1])
        time.sleep(0.1)
    raise SystemExit(f"no dump appeared for {label}")

TASK = f"cg-{run_id}"
AGENT = "cg-agent"
CONTENT = ("# callgrind\n" + "0123456789abcdef" * 300)[:4096]
def request(tool, i):
    if tool == "file_read":
        return call("/tools/file_read", {"task_id": TASK, "path": "hot.txt", "agent_id": AGENT})
    if tool == "log_step":
        return call("/tools/log_step", {"task_id": TASK, "agent_id": AGENT,
                                        "step": {"action": "work", "agent": AGENT, "n": i,
                                                 "pad": "x" * 140}})
    if tool == "file_write":
        return call("/tools/file_write", {"task_id": TASK, "path": "written.txt",
                                          "content": CONTENT, "agent_id": AGENT})
    if tool == "claim_release":  # one pair: a new grant (a fence), then its release
        status, body = call("/tools/claim_file", {"task_id": TASK, "path": "locks/cg.txt",
                                                  "agent_id": AGENT, "timeout_sec": 30})
        if status != 200:
            return status, body
        return call("/tools/release_file", {"task_id": TASK, "path": "locks/cg.txt",
                                            "agent_id": AGENT})
    raise SystemExit(f"unknown tool {tool}")

try:
    for _ in range(1200):  # valgrind starts slowly
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5); c.request("GET", "/health")
            if c.getresponse().status == 200: break
        except OSError: pass
        if gw.poll() is not None: raise SystemExit("gateway exited; see " + out + "/valgrind.log")
        time.sleep(0.25)
    else:
        raise SystemExit("gateway did not become healthy")
    status, body = call("/admin/tasks", {"id": TASK, "title": "callgrind"})
    assert status in (200, 201), (status, body)
    status, body = call("/tools/file_write", {"task_id": TASK, "path": "hot.txt", "content": CONTENT,
                                              "agent_id": AGENT})
    assert status == 200, (status, body)
    results = {}
    for tool in args.tools.split(","):
        for i in range(max(args.n // 5, 20)):
            status, body = request(tool, i)
            assert status == 200, (tool, status, body)
        control("--zero")
        started = time.time()
        for i in range(args.n):
            status, body = request(tool, i)
            assert status == 200, (tool, status, body)
        took = time.time() - started
        f, ir = dump(tool)
        shutil.move(f, os.path.join(out, f"{tool}.callgrind"))
        results[tool] = (ir, took)
    control("--zero")
    time.sleep(3)
    f, idle_ir = dump("idle")
    shutil.move(f, os.path.join(out, "idle.callgrind"))
    idle_per_s = idle_ir / 3
    print(f"# {mode}; N = {args.n} per tool; output in {out}")
    print(f"# idle: {idle_per_s:,.0f} Ir/s of background work")
    print(f"{'tool':<12} {'Ir/request':>12} {'idle share':>11} {'s under valgrind':>17}")
    for tool, (ir, took) in results.items():
        print(f"{tool:<12} {ir / args.n:>12,.0f} {idle_per_s * took / ir:>10.1%} {took:>17.1f}")
        # Self cost per function. (The frames that were on a thread's stack when the
        # counters were zeroed — the runtime's worker loops — show the whole dump as their
        # own: they are left out.)
        listing = subprocess.run(["callgrind_annotate", "--threshold=100", "--auto=no",
                                  os.path.join(out, f"{tool}.callgrind")],
                                 capture_output=True, text=True).stdout.splitlines()
        frames = re.compile(r"clone\.S:clone|start_thread|Thread>::new::thread_start|"
                            r"FnOnce::call_once|__rust_begin_short_backtrace|tokio::runtime::(blocking::pool::"
                            r"Inner::run|context::|scheduler::multi_thread::worker::run|"
                            r"task::core::Core|task::harness::Harness|task::raw::poll)")
        rows = [l for l in listing if re.match(r"^\s*[\d,]+ \(\s*[\d.]+%\)\s", l)
                and "PROGRAM TOTALS" not in l and not frames.search(l)]
        with open(os.path.join(out, f"{tool}.top.txt"), "w") as fh:
            fh.write(f"# {tool}: self cost per function, {args.n} requests, {mode}\n")
            for l in rows[:args.top]:
                m = re.match(r"^\s*([\d,]+) \(\s*([\d.]+)%\)\s+(.*)$", l)
                ir = int(m.group(1).replace(",", ""))
                name = re.sub(r"\s\[[^\]]*\]$", "", m.group(3))
                fh.write(f"{ir // args.n:>9,} Ir/req {m.group(2):>6}%  {name}\n")
    sys.stdout.flush()
finally:
    if conn: conn.close()
    cleanup()
