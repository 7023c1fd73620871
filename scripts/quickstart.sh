#!/usr/bin/env bash
# The README's quick start, step by step, failing on any error: build, start the gateway in
# embedded mode (a free port, a fresh temporary DATA_DIR), check its health, write a file,
# read it back, watch its event, find the task in the list, stop the gateway with SIGTERM.
# Leaves nothing behind.
#
#   scripts/quickstart.sh                  # builds as the README says: cargo build --release
#   BIN_DIR=target/debug scripts/quickstart.sh
#                                          # no build: the binaries already in BIN_DIR (what
#                                          # scripts/test.sh does after the test build)
#
# The only difference from the README: a free port instead of 8001 (so it never meets a
# gateway that is already running), named by MCP_GATEWAY_URL / MCP_GATEWAY_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { echo "quickstart: $*" >&2; }
fail() { echo "quickstart: FAILED: $*" >&2; exit 1; }

if [ -z "${BIN_DIR:-}" ]; then
  step "cargo build --release"
  cargo build --release
  BIN_DIR="${CARGO_TARGET_DIR:-target}/release"
else
  step "no build: the binaries in $BIN_DIR"
fi
for b in mcp-gateway mcpctl; do
  [ -x "$BIN_DIR/$b" ] || fail "$BIN_DIR/$b is missing (build it, or set BIN_DIR)"
done
export PATH="$(cd "$BIN_DIR" && pwd):$PATH"

data_dir=$(mktemp -d /tmp/mcp-quickstart.XXXXXX)
log="$data_dir/gateway.log"
gw_pid=""
cleanup() {
  if [ -n "$gw_pid" ]; then kill "$gw_pid" 2>/dev/null || true; wait "$gw_pid" 2>/dev/null || true; fi
  rm -rf "$data_dir"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export MCP_GATEWAY_URL="http://127.0.0.1:$port"
# Embedded mode: nothing names a Postgres or a Redis.
step "DATA_DIR=$data_dir mcp-gateway & (port $port)"
env -u DATABASE_URL -u REDIS_URL DATA_DIR="$data_dir" MCP_GATEWAY_PORT="$port" \
  mcp-gateway >"$log" 2>&1 &
gw_pid=$!
ready=false
for _ in $(seq 1 300); do
  kill -0 "$gw_pid" 2>/dev/null || { cat "$log" >&2; fail "the gateway exited"; }
  if mcpctl --retries 1 --timeout 2 -q health >/dev/null 2>&1; then ready=true; break; fi
  sleep 0.1
done
$ready || { cat "$log" >&2; fail "the gateway did not become healthy in 30 s"; }

step "mcpctl health"
health=$(mcpctl health)
echo "$health"
case "$health" in
  healthy*"redis embedded"*"postgres embedded"*) ;;
  *) fail "unexpected health: $health" ;;
esac

step "mcpctl file write t1 hello.txt --content 'hello'"
mcpctl file write t1 hello.txt --content 'hello'

step "mcpctl file read t1 hello.txt"
content=$(mcpctl file read t1 hello.txt)
[ "$content" = "hello" ] || fail "read back '$content', not 'hello'"
echo "$content"

step "mcpctl watch t1 --since 0 --count 1"
event=$(mcpctl watch t1 --since 0 --count 1 --timeout 20)
echo "$event"
case "$event" in
  *file_written*hello.txt*) ;;
  *) fail "the watch did not show the write: $event" ;;
esac

step "mcpctl task list"
list=$(mcpctl task list)
echo "$list"
echo "$list" | grep -q '^t1 ' || fail "mcpctl task list does not show t1"

step "kill %1 (SIGTERM)"
kill -TERM "$gw_pid"
status=0
wait "$gw_pid" || status=$?
gw_pid=""
[ "$status" = 0 ] || { cat "$log" >&2; fail "the gateway exited with status $status on SIGTERM"; }
step "ok"
