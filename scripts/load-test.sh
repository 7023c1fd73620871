#!/usr/bin/env bash
# Runs mcp-loadtest (the workspace's release build, reused when present) against a gateway.
#
#   scripts/load-test.sh [--spawn | --embedded] [--floors] [--keep] [mcp-loadtest flags…]
#
# Without --spawn: against MCP_GATEWAY_URL (default http://127.0.0.1:8001); every other flag
# goes to mcp-loadtest (`--scenario`, `--agents`, `--duration`, `--report FILE`, `--token`, …;
# see `mcp-loadtest --help`).
# --spawn: builds and starts a release gateway on a free port over a fresh database
#   (mcp_loadtest_<random> on PG_URL, default postgres://postgres@127.0.0.1:5432) and a fresh
#   Redis key prefix (loadtest-<random>: on REDIS_URL), passes its pid (resident memory) and
#   its database (steps counted in Postgres) to the load test, and removes all of it afterwards
#   (unless --keep). The gateway runs with its defaults (sync loops inside, RUST_LOG=warn)
#   except the per-agent rate limit, set so high that it never refuses (RATE_LIMIT_REQUESTS,
#   default here 1e9): with authentication off the whole load is one agent (the client
#   address), which the default 1,200/min would cut to 20 req/s. The check still runs.
# --embedded: like --spawn, but the gateway runs in embedded mode (no DATABASE_URL, no
#   REDIS_URL: a SQLite file in a fresh temporary DATA_DIR and the in-process hot layer);
#   the audit counts the steps through the gateway. No --floors.
# --floors: before the load test, measures the floors on the same servers at the same
#   concurrency (--connections, default 64): Redis GET/SET of --payload bytes with
#   redis-benchmark, and single-row upserts of --payload bytes with pgbench (custom script,
#   one row per client, on a scratch table in the spawned database; needs --spawn). Then the
#   request-path floor (issue #19): `floor_server` (crates/loadtest/examples: an axum handler
#   that parses the JSON body and answers one Redis GET of --payload bytes as JSON) driven by
#   the same mcp-loadtest flags (--no-audit), and after the gateway's run the ratio of the
#   two. With `wrk` installed, the same pair again through wrk (64 connections, the same
#   duration; `file_read` and `log_step` only), so both generators' ratios can be compared.
# MCP_BIN_DIR=DIR: use the mcp-gateway, mcp-loadtest and floor_server binaries in DIR instead
#   of building them (to compare two builds, e.g. before and after a change, interleaved).
# Exit status: mcp-loadtest's (1 when the audit fails).
set -euo pipefail
cd "$(dirname "$0")/.."

spawn=false embedded=false floors=false keep=false
args=()
connections=64 payload=4096
while [ $# -gt 0 ]; do
  case "$1" in
    --spawn) spawn=true ;;
    --embedded) spawn=true embedded=true ;;
    --floors) floors=true ;;
    --keep) keep=true ;;
    --connections) connections="$2"; args+=("$1" "$2"); shift ;;
    --payload) payload="$2"; args+=("$1" "$2"); shift ;;
    *) args+=("$1") ;;
  esac
  shift
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# The README's release build, exactly: the whole workspace, so every dependency is compiled
# with the same (unified) features and an earlier `cargo build --release` is reused as it is.
# (`-p mcp-loadtest` alone resolves other features and rebuilt most dependencies.)
if [ -n "${MCP_BIN_DIR:-}" ]; then
  src="$MCP_BIN_DIR"
else
  cargo build --release --workspace --quiet
  $floors && cargo build --release --workspace --quiet --example floor_server
  src="$CARGO_TARGET_DIR/release"
  [ -x "$src/examples/floor_server" ] && cp "$src/examples/floor_server" "$src/floor_server"
fi
# A private copy: the target directory may be shared, and another build could replace the
# binaries while the test runs.
bin=$(mktemp -d /tmp/mcp-loadtest-bin.XXXXXX)
cp "$src/mcp-loadtest" "$bin/"
$spawn && cp "$src/mcp-gateway" "$bin/"
$floors && cp "$src/floor_server" "$bin/"

gw_pid="" floor_pid="" db="" prefix="" data_dir=""
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
cleanup() {
  if [ -n "$gw_pid" ]; then kill "$gw_pid" 2>/dev/null || true; wait "$gw_pid" 2>/dev/null || true; fi
  if [ -n "$floor_pid" ]; then kill "$floor_pid" 2>/dev/null || true; wait "$floor_pid" 2>/dev/null || true; fi
  rm -rf "$bin"
  if [ -n "$data_dir" ] && ! $keep; then rm -rf "$data_dir"; fi
  if ! $keep; then
    if [ -n "$db" ]; then psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; fi
    if [ -n "$prefix" ]; then
      redis-cli -u "$REDIS_URL" --scan --pattern "${prefix}*" | xargs -r -n 500 redis-cli -u "$REDIS_URL" del >/dev/null || true
    fi
  elif [ -n "$db" ]; then
    echo "kept: database $db, key prefix $prefix" >&2
  fi
}
trap cleanup EXIT

if $spawn; then
  if $embedded; then
    data_dir=$(mktemp -d /tmp/mcp-loadtest-data.XXXXXX)
    backends=(env -u DATABASE_URL -u REDIS_URL DATA_DIR="$data_dir")
    where="embedded: DATA_DIR $data_dir"
  else
    id=$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
    db="mcp_loadtest_$id" prefix="loadtest-$id:"
    backends=(env DATABASE_URL="$PG_URL/$db" REDIS_URL="$REDIS_URL" REDIS_KEY_PREFIX="$prefix")
    where="database $db, prefix $prefix"
    args=(--database-url "$PG_URL/$db" "${args[@]}")
  fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "${backends[@]}" \
    MCP_GATEWAY_HOST=127.0.0.1 MCP_GATEWAY_PORT="$port" RUST_LOG="${RUST_LOG:-warn}" \
    RATE_LIMIT_REQUESTS="${RATE_LIMIT_REQUESTS:-1000000000}" \
    "$bin/mcp-gateway" & gw_pid=$!
  base="http://127.0.0.1:$port"
  for _ in $(seq 1 300); do
    curl -fsS "$base/health" >/dev/null 2>&1 && break
    kill -0 "$gw_pid" 2>/dev/null || { echo "gateway exited" >&2; exit 2; }
    sleep 0.1
  done
  echo "gateway pid $gw_pid at $base ($where)" >&2
  args=(--base "$base" --gateway-pid "$gw_pid" "${args[@]}")
fi

if $floors; then
  { $spawn && ! $embedded; } || { echo "--floors needs --spawn (it uses the spawned database)" >&2; exit 2; }
  echo "== floor: redis-benchmark GET/SET, $payload bytes, $connections connections" >&2
  redis-benchmark -u "$REDIS_URL" -c "$connections" -n 100000 -d "$payload" -t get,set -q \
    -r 1000 2>/dev/null | tr '\r' '\n' | grep -E '^(GET|SET):' | tail -2 >&2
  echo "== floor: pgbench single-row upsert, $payload bytes, $connections clients, 10 s" >&2
  psql -q "$PG_URL/$db" -c "CREATE TABLE IF NOT EXISTS loadtest_floor (id int PRIMARY KEY, content text, version bigint)"
  script=$(mktemp)
  printf '%s\n' "INSERT INTO loadtest_floor (id, content, version) VALUES (:client_id, repeat('x', $payload), 1) ON CONFLICT (id) DO UPDATE SET content = EXCLUDED.content, version = loadtest_floor.version + 1;" >"$script"
  pgbench -n -c "$connections" -j 2 -T 10 -f "$script" "$PG_URL/$db" 2>/dev/null \
    | grep -E '^(tps|latency average)' >&2
  rm -f "$script"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# The value of a field of a mcp-loadtest JSON report (throughput_rps, all.p99_ms, ...).
report_field() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); [v:=v[k] for k in sys.argv[2].split(".")]; print(round(v, 2))' "$1" "$2"; }
# One wrk run: POST $2 (a JSON body) to $1 with the generator's connections for the run's
# duration; prints "req/s p99_ms".
wrk_run() {
  local lua
  lua=$(mktemp --suffix .lua)
  printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [[%s]]\n' "$2" >"$lua"
  wrk -t 2 -c "$connections" -d "${duration}s" --latency -s "$lua" "$1" 2>/dev/null \
    | awk '/Requests\/sec/ {rps=$2} /^ +99%/ {p=$2} END {print rps, p}'
  rm -f "$lua"
}

duration=10 op="" report=""
reports=$(mktemp -d /tmp/mcp-loadtest-reports.XXXXXX)
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --duration) duration="${args[$((i + 1))]}" ;;
    --op) op="${args[$((i + 1))]}" ;;
    --report) report="${args[$((i + 1))]}" ;;
  esac
done
run_args=("${args[@]}")
[ -n "$report" ] || { report="$reports/run.json"; run_args+=(--report "$report"); }
floor_rps=""
if $floors; then
  fport=$(free_port)
  "$bin/floor_server" --port "$fport" --redis-url "$REDIS_URL" --key "${prefix}floor" \
    --payload "$payload" & floor_pid=$!
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$fport/health" >/dev/null 2>&1 && break; sleep 0.1; done
  floor_args=()
  for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[$i]}" in
      --base|--gateway-pid|--database-url|--report) i=$((i + 1)) ;;
      *) floor_args+=("${args[$i]}") ;;
    esac
  done
  echo "== floor: axum + JSON body + one Redis GET of $payload bytes (floor_server), same load" >&2
  "$bin/mcp-loadtest" "${floor_args[@]}" --base "http://127.0.0.1:$fport" --no-audit --quiet \
    --report "$reports/floor.json" >/dev/null
  floor_rps=$(report_field "$reports/floor.json" throughput_rps)
  echo "floor_server: $floor_rps req/s, p99 $(report_field "$reports/floor.json" all.p99_ms) ms" >&2
fi

set +e
"$bin/mcp-loadtest" "${run_args[@]}"
status=$?
set -e
if [ -n "$floor_rps" ] && [ -s "$report" ]; then
  rps=$(report_field "$report" throughput_rps)
  echo "== ratio to the floor (mcp-loadtest): $rps / $floor_rps = $(python3 -c "print(round($rps / $floor_rps, 3))")" >&2
  if command -v wrk >/dev/null && { [ "$op" = file-read ] || [ "$op" = log-step ]; } && ! $embedded; then
    wtask="wrk-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    content=$(python3 -c "import json; print(json.dumps(('0123456789abcdef' * ($payload // 16 + 1))[:$payload]))")
    curl -fsS -X POST "$base/tools/file_write" -H 'Content-Type: application/json' \
      -d "{\"task_id\":\"$wtask\",\"path\":\"hot.txt\",\"content\":$content}" >/dev/null
    if [ "$op" = file-read ]; then
      body="{\"task_id\":\"$wtask\",\"path\":\"hot.txt\",\"agent_id\":\"wrk\"}"
    else
      body="{\"task_id\":\"$wtask\",\"agent_id\":\"wrk\",\"step\":{\"action\":\"work\",\"n\":1,\"pad\":\"$(printf '%*s' 140 '' | tr ' ' x)\"}}"
    fi
    path="/tools/${op/-/_}"
    read -r w_floor w_floor_p99 <<<"$(wrk_run "http://127.0.0.1:$fport$path" "$body")"
    read -r w_gw w_gw_p99 <<<"$(wrk_run "$base$path" "$body")"
    echo "== wrk, $connections connections, ${duration}s: floor $w_floor req/s (p99 $w_floor_p99), gateway $w_gw req/s (p99 $w_gw_p99); ratio $(python3 -c "print(round($w_gw / $w_floor, 3))")" >&2
  fi
fi
rm -rf "$reports"
exit $status
