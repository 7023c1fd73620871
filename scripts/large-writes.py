#!/usr/bin/env python3
"""Memory of large writes (issue #14, item 10): starts a release gateway, sends N concurrent
8 MiB `file_write`s (each to its own path), and reports the gateway's peak RSS (VmHWM) and
its RSS after 10 s idle. A 503 is retried after its Retry-After, as the agent client does.

    scripts/large-writes.py BINARY N [ENV=VALUE ...]

Deployed mode on DATABASE_URL's server (a fresh database `mcp_large_writes_<pid>`, dropped
after) and a private `redis-server` (the hot copies of 64 files take 512 MiB). Extra ENV=VALUE pairs go to the gateway, e.g.
LARGE_BODY_BUDGET_BYTES=0 for no bound."""
import http.client, json, os, socket, subprocess, sys, threading, time, urllib.parse

binary, n = sys.argv[1], int(sys.argv[2])
extra = dict(kv.split("=", 1) for kv in sys.argv[3:])
pg = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
db = f"mcp_large_writes_{os.getpid()}"
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
port, rport = free_port(), free_port()
redis = subprocess.Popen(["redis-server", "--port", str(rport), "--save", "", "--appendonly", "no",
                          "--maxmemory-policy", "noeviction"], stdout=subprocess.DEVNULL)
env = dict(os.environ, DATABASE_URL=pg.rsplit("/", 1)[0] + "/" + db,
           REDIS_URL=f"redis://127.0.0.1:{rport}", MCP_GATEWAY_PORT=str(port),
           RATE_LIMIT_REQUESTS="0", RUST_LOG="warn", **extra)
gw = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL)

def status(field):
    for line in open(f"/proc/{gw.pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # MiB
def call(body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", "/tools/file_write", body, {"Content-Type": "application/json"})
    r = c.getresponse(); r.read(); c.close()
    return r.status, r.getheader("Retry-After")

for _ in range(300):
    try:
        if call(json.dumps({"task_id": "big", "path": "warm", "content": "x"}))[0] == 200: break
    except OSError: time.sleep(0.1)
base = status("VmRSS")
content = "x" * (8 * 1024 * 1024)
codes, retries, lock = [], [0], threading.Lock()
def writer(i):
    body = json.dumps({"task_id": "big", "path": f"f{i}.txt", "content": content})
    while True:
        code, after = call(body)
        if code == 503:
            with lock: retries[0] += 1
            time.sleep(float(after or 1)); continue
        with lock: codes.append(code)
        return
started = time.time()
threads = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
for t in threads: t.start()
for t in threads: t.join()
took = time.time() - started
peak = status("VmHWM")
time.sleep(10)
idle = status("VmRSS")
gw.terminate(); gw.wait(); redis.terminate(); redis.wait()
subprocess.run(["psql", pg, "-qc", f"DROP DATABASE IF EXISTS {db}"], check=False)
print(json.dumps({"writes": n, "ok": codes.count(200), "other": [c for c in codes if c != 200],
                  "retried_503": retries[0], "seconds": round(took, 1),
                  "rss_before_mib": round(base, 1), "rss_peak_mib": round(peak, 1),
                  "rss_after_idle_mib": round(idle, 1), "env": extra}))
