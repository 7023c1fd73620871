#!/usr/bin/env bash
# The `steady` scenario on one Redis and on a Redis Cluster, side by side (issue #20):
# interleaved rounds (single, cluster, single, cluster, …) on the same machine, each against a
# freshly spawned gateway over a fresh database; prints one line per run and the medians.
#
#   scripts/bench-redis-cluster.sh [ROUNDS] [mcp-loadtest flags…]
#
# BIN: the directory holding mcp-gateway and mcp-loadtest (default target/release; build them
# first: `cargo build --release --workspace`). The single Redis is REDIS_URL (default
# redis://127.0.0.1:6379, a fresh key prefix per run); the cluster is three private
# `redis-server --cluster-enabled yes` primaries on free ports, created here and killed at the
# end. Defaults: --scenario steady --agents 200 --tasks 20 --rate 1 --duration 15
# --connections 32.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"; shift || true
flags=("$@")
[ ${#flags[@]} -gt 0 ] || flags=(--agents 200 --tasks 20 --rate 1 --duration 15 --connections 32)
BIN="${BIN:-target/release}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
work=$(mktemp -d /tmp/mcp-bench-cluster.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

nodes=()
while [ ${#nodes[@]} -lt 3 ]; do
  p=$(free_port)
  [ "$p" -lt 55000 ] || continue
  mkdir -p "$work/n$p"
  redis-server --port "$p" --bind 127.0.0.1 --dir "$work/n$p" --save "" --appendonly no \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
    >/dev/null 2>&1 & pids+=($!)
  nodes+=("127.0.0.1:$p")
done
sleep 0.5
redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
for n in "${nodes[@]}"; do
  until redis-cli -h 127.0.0.1 -p "${n#*:}" cluster info | grep -q cluster_state:ok; do sleep 0.1; done
done
cluster_url="redis+cluster://$(IFS=,; echo "${nodes[*]}")"

run() { # topology redis-url
  local id db prefix port gw out
  id=$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
  db="mcp_bench_$id" prefix="bench-$id:"
  port=$(free_port)
  DATABASE_URL="$PG_URL/$db" REDIS_URL="$2" REDIS_KEY_PREFIX="$prefix" \
    MCP_GATEWAY_HOST=127.0.0.1 MCP_GATEWAY_PORT="$port" RUST_LOG=warn \
    RATE_LIMIT_REQUESTS=1000000000 "$BIN/mcp-gateway" & gw=$!
  for _ in $(seq 1 300); do curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
  "$BIN/mcp-loadtest" --quiet --base "http://127.0.0.1:$port" --gateway-pid "$gw" \
    --database-url "$PG_URL/$db" --scenario steady "${flags[@]}" --report "$work/r.json" >/dev/null || true
  kill "$gw"; wait "$gw" 2>/dev/null || true
  psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  [ "$1" = single ] && redis-cli -u "$REDIS_URL" --scan --pattern "${prefix}*" | xargs -r -n 500 redis-cli -u "$REDIS_URL" del >/dev/null
  python3 - "$1" "$work/r.json" <<'PY' | tee -a "$work/lines"
import json, sys
r = json.load(open(sys.argv[2]))
a = r["all"]
audit = r.get("audit") or {}
print(f'{sys.argv[1]} {r["throughput_rps"]:.0f} {a["p50_ms"]:.1f} {a["p95_ms"]:.1f} {a["p99_ms"]:.1f} {r["error_rate"]:.4f} {"clean" if audit.get("ok") else "FAILED"} {r.get("cpu_seconds_gateway") or 0:.1f}')
PY
}

echo "topology req/s p50_ms p95_ms p99_ms error_rate audit gateway_cpu_s"
for i in $(seq 1 "$rounds"); do
  run single "$REDIS_URL"
  run cluster "$cluster_url"
done
python3 - "$work/lines" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
for topo in ("single", "cluster"):
    rs = [r for r in rows if r[0] == topo]
    med = lambda i: statistics.median(float(r[i]) for r in rs)
    print(f"median {topo}: {med(1):.0f} req/s, p50 {med(2):.1f} ms, p95 {med(3):.1f} ms, p99 {med(4):.1f} ms, gateway CPU {med(7):.1f} s ({len(rs)} runs)")
PY
