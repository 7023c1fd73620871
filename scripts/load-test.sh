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
#   one row per client, on a scratch table in the spawned database; needs --spawn).
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
cargo build --release --workspace --quiet
# A private copy: the target directory may be shared, and another build could replace the
# binaries while the test runs.
bin=$(mktemp -d /tmp/mcp-loadtest-bin.XXXXXX)
cp "$CARGO_TARGET_DIR/release/mcp-loadtest" "$bin/"
$spawn && cp "$CARGO_TARGET_DIR/release/mcp-gateway" "$bin/"

gw_pid="" db="" prefix="" data_dir=""
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
cleanup() {
  if [ -n "$gw_pid" ]; then kill "$gw_pid" 2>/dev/null || true; wait "$gw_pid" 2>/dev/null || true; fi
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

set +e
"$bin/mcp-loadtest" "${args[@]}"
status=$?
set -e
exit $status
