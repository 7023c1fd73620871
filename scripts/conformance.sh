#!/usr/bin/env bash
# The official MCP conformance suite (`@modelcontextprotocol/conformance`, run on Node 22)
# against a running gateway, in both modes — embedded (SQLite + in-process) and deployed
# (Postgres + Redis) — for protocol revisions 2025-11-25 and 2026-07-28: exactly the
# scenarios each revision requires (`--requirements`). Prints a table of every scenario and
# exits non-zero when a scenario that should pass fails, or when one listed as not
# applicable passes (the list is then stale). docs/CONFORMANCE.md explains each verdict.
#
# Usage: scripts/conformance.sh [embedded|deployed|both]   (default: both)
#   MCP_GATEWAY_BIN        a gateway binary (default: build target/debug/mcp-gateway)
#   DATABASE_URL, REDIS_URL  the servers of the deployed mode (a fresh database and key
#                          prefix are made there and dropped afterwards)
#
# The suite and Node 22 are installed once under the target directory (scripts/lib/
# mcp-clients.sh). When they cannot be installed (no npm, no network), it says so loudly and
# exits 0 — but 1 under scripts/test.sh (MCP_TEST_CLIENTS_REQUIRED=1), where it must run.
#
# The scenarios that need the suite's own fixture server (its test_* tools, prompts and
# resources, sampling and elicitation round trips) are listed, with the reason, in
# scripts/conformance/<revision>.yml: the suite's `--expected-failures` baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/mcp-clients.sh
. scripts/lib/mcp-clients.sh
# shellcheck source=lib/gateway.sh
me=conformance; . scripts/lib/gateway.sh

modes="${1:-both}"
[ "$modes" = both ] && modes="embedded deployed"
revisions="2025-11-25 2026-07-28"
install_mcp_clients
if [ -z "${MCP_CONFORMANCE:-}" ] && [ "${MCP_TEST_CLIENTS_REQUIRED:-}" = 1 ]; then
  echo "conformance.sh: FAILED — the conformance suite and Node 22 could not be installed (see above)" >&2
  exit 1
fi
if [ -z "${MCP_CONFORMANCE:-}" ]; then
  echo "" >&2
  echo "conformance.sh: SKIPPED — the conformance suite and Node 22 could not be installed (see above)." >&2
  echo "conformance.sh: the MCP conformance run did NOT happen." >&2
  exit 0
fi

gateway_bin
gateway_tmp

failed=0
run() {
  local mode=$1 revision
  # A task, so that the resource lists have entries and the templates something to name.
  curl -fsS -X POST "$base/admin/tasks" -H 'content-type: application/json' \
    -d '{"id":"conformance","title":"conformance"}' >/dev/null
  for revision in $revisions; do
    echo "conformance.sh: $mode gateway at $base, revision $revision" >&2
    if ! "$MCP_TEST_NODE" "$MCP_CONFORMANCE" server --url "$base/mcp" --requirements "$revision" \
        --expected-failures "scripts/conformance/$revision.yml" \
        -o "$tmp/results/$mode/$revision" >"$tmp/$mode-$revision.log" 2>&1; then
      failed=1
      echo "conformance.sh: $mode $revision: FAILED (suite output, then the gateway log)" >&2
      cat "$tmp/$mode-$revision.log" >&2
      tail -30 "$tmp/gateway.log" >&2
    fi
  done
}

each_mode "$modes"

# The table: one row per scenario and revision, one column per mode.
NODE_PATH="$MCP_TEST_NODE_PATH" "$MCP_TEST_NODE" scripts/conformance/table.cjs "$tmp/results" scripts/conformance $modes
if [ "$failed" != 0 ]; then
  echo "conformance.sh: FAILED — a scenario expected to pass failed, or one listed as not applicable passed" >&2
  exit 1
fi
echo "conformance.sh: every required scenario that does not need the suite's fixtures passed" >&2
