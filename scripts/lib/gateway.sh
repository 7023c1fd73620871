# Sourced by the scripts that test a running gateway binary in both modes
# (scripts/conformance.sh, scripts/schemathesis.sh). The caller sets `me` (its name, for
# messages) and defines `run MODE`; then:
#   gateway_bin            sets $bin: $MCP_GATEWAY_BIN, or a fresh debug build
#   gateway_tmp            makes $tmp and cleans up at exit (the gateway, its database and keys)
#   each_mode "MODES"      per mode: a fresh gateway (embedded: its own DATA_DIR under $tmp;
#                          deployed: a fresh database and key prefix on DATABASE_URL and
#                          REDIS_URL), then `run MODE` with $base set, then stop it
# The gateway's log is $tmp/gateway.log.

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"

gateway_bin() {
  if [ -n "${MCP_GATEWAY_BIN:-}" ]; then
    bin="$MCP_GATEWAY_BIN"
  else
    cargo build -q -p mcp-gateway --bin mcp-gateway
    bin="${CARGO_TARGET_DIR:-target}/debug/mcp-gateway"
  fi
}

gateway_tmp() {
  tmp=$(mktemp -d "/tmp/mcp-$me.XXXXXX")
  gw_pid="" db="" prefix=""
  trap gateway_cleanup EXIT
}

gateway_cleanup() {
  stop
  if [ -n "$prefix" ] && command -v redis-cli >/dev/null; then
    redis-cli -u "$REDIS_URL" --scan --pattern "$prefix*" | xargs -r -n 500 redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
  fi
  if [ -n "$db" ]; then psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true; fi
  rm -rf "$tmp"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts the gateway with the environment given as arguments; waits for /health.
start() {
  local port; port=$(free_port)
  env -u DATABASE_URL -u REDIS_URL -u JWT_SECRET -u OAUTH_ISSUER MCP_GATEWAY_PORT="$port" RUST_LOG=warn "$@" "$bin" \
    >"$tmp/gateway.log" 2>&1 &
  gw_pid=$!
  base="http://127.0.0.1:$port"
  for _ in $(seq 300); do
    curl -fsS "$base/health" >/dev/null 2>&1 && return 0
    kill -0 "$gw_pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$tmp/gateway.log" >&2
  echo "$me.sh: the gateway did not start" >&2
  exit 1
}

stop() {
  [ -n "$gw_pid" ] || return 0
  kill "$gw_pid" 2>/dev/null || true
  wait "$gw_pid" 2>/dev/null || true
  gw_pid=""
}

each_mode() {
  local mode
  for mode in $1; do
    case "$mode" in
      embedded)
        mkdir -p "$tmp/data"
        start DATA_DIR="$tmp/data"
        ;;
      deployed)
        db="${me}_$$"
        prefix="$me:$$:"
        psql "$DATABASE_URL" -qc "CREATE DATABASE \"$db\"" >/dev/null
        start DATABASE_URL="${DATABASE_URL%/*}/$db" REDIS_URL="$REDIS_URL" REDIS_KEY_PREFIX="$prefix"
        ;;
      *) echo "$me.sh: unknown mode $mode (embedded|deployed|both)" >&2; exit 2 ;;
    esac
    run "$mode"
    stop
  done
}
