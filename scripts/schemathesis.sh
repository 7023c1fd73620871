#!/usr/bin/env bash
# Schemathesis against the OpenAPI document of a running gateway, in both modes: embedded
# (SQLite + in-process) and deployed (Postgres + Redis). Every generated case must answer
# without a 5xx and as the document says (status, content type, headers, body schema).
#
# Usage: scripts/schemathesis.sh [embedded|deployed|both]   (default: both)
#   SCHEMATHESIS_EXAMPLES  cases per operation and generation phase (default 30: ~1,560
#                          cases per mode over the 25 operations, ~2 min per mode)
#   SCHEMATHESIS_VENV      where schemathesis is installed (default target/schemathesis-venv)
#   MCP_GATEWAY_BIN        a gateway binary to test (default: build target/debug/mcp-gateway)
#   DATABASE_URL, REDIS_URL  the servers of the deployed mode (a fresh database and key
#                          prefix are made there and dropped afterwards)
#
# Installs schemathesis (pinned) into the venv once, from PyPI. When it cannot be installed
# (no python3/venv, no network), it says so loudly and exits 0: the rest of the suite still
# runs, and the skip is visible in the output. Any other failure fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/gateway.sh
me=schemathesis; . scripts/lib/gateway.sh

VERSION=4.32.5
venv="${SCHEMATHESIS_VENV:-target/schemathesis-venv}"
examples="${SCHEMATHESIS_EXAMPLES:-30}"
modes="${1:-both}"
[ "$modes" = both ] && modes="embedded deployed"

skip() {
  echo "" >&2
  echo "schemathesis.sh: SKIPPED — $*" >&2
  echo "schemathesis.sh: the OpenAPI conformance run did NOT happen." >&2
  exit 0
}

if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$VERSION"; then
  echo "schemathesis.sh: installing schemathesis $VERSION into $venv" >&2
  command -v python3 >/dev/null || skip "python3 is not installed"
  python3 -m venv "$venv" >/dev/null 2>&1 || skip "python3 -m venv failed (install python3-venv)"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$VERSION" >&2 \
    || skip "pip could not install schemathesis==$VERSION from PyPI"
fi

gateway_bin
gateway_tmp

run() {
  local mode=$1
  echo "schemathesis.sh: $mode gateway at $base, $examples cases per operation and phase" >&2
  # Two tasks exist, so generated ids sometimes name one and the happy paths run too.
  for t in a b; do
    curl -fsS -X POST "$base/admin/tasks" -H 'content-type: application/json' \
      -d "{\"id\":\"$t\",\"title\":\"schemathesis\"}" >/dev/null
  done
  # The live streams never end by themselves: their tests are in tests/it/live.rs.
  "$venv/bin/st" run "$base/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --exclude-path '/tasks/{task_id}/events' --exclude-path /ws \
    --phases examples,coverage,fuzzing \
    --max-examples "$examples" --seed 1 --workers 1 --generation-database none --request-timeout 10 \
    --suppress-health-check all --no-color \
    --report junit --report-junit-path "$tmp/$mode.xml" \
    || { echo "schemathesis.sh: $mode: FAILED (gateway log below)" >&2; tail -50 "$tmp/gateway.log" >&2; exit 1; }
}

each_mode "$modes"
echo "schemathesis.sh: OK ($modes)" >&2
