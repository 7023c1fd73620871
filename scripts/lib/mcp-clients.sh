# shellcheck shell=bash
# The official MCP tools the tests run, installed once under the cargo target directory
# (sourced by scripts/test.sh and scripts/conformance.sh):
#
#   * Node.js 22 (the npm package `node@22`), the conformance suite
#     `@modelcontextprotocol/conformance`, the TypeScript SDK v1 `@modelcontextprotocol/sdk`
#     and v2 `@modelcontextprotocol/client`, into $MCP_TOOLS_DIR/node (npm);
#   * the Python SDK `mcp`, into the venv $MCP_TOOLS_DIR/py (pip).
#
# Versions are pinned (the newest on npm and PyPI when pinned); a stamp file makes a second
# run a no-op. `install_mcp_clients` sets and exports what the tests look for:
#   MCP_TEST_NODE       the node 22 binary
#   MCP_TEST_NODE_PATH  the node_modules holding both TypeScript SDKs (NODE_PATH for scripts)
#   MCP_TEST_PYTHON     the venv's python, with `mcp`
#   MCP_CONFORMANCE     the conformance suite's entry point (run with MCP_TEST_NODE)
# Whatever cannot be installed is left unset, with a line on stderr saying what and why.

MCP_NODE_VERSION=22.23.3
MCP_CONFORMANCE_VERSION=0.2.0-alpha.12
MCP_TS_SDK_V1_VERSION=1.32.2
MCP_TS_SDK_V2_VERSION=2.4.0
MCP_PY_SDK_VERSION=2.3.0

install_mcp_clients() {
  local target="${CARGO_TARGET_DIR:-target}"
  local tools="${MCP_TOOLS_DIR:-$target/mcp-tools}"
  mkdir -p "$tools"
  tools="$(cd "$tools" && pwd)"
  local node_dir="$tools/node"
  local stamp="node@$MCP_NODE_VERSION conformance@$MCP_CONFORMANCE_VERSION sdk@$MCP_TS_SDK_V1_VERSION client@$MCP_TS_SDK_V2_VERSION"
  if [ "$(cat "$node_dir/.installed" 2>/dev/null)" != "$stamp" ]; then
    if ! command -v npm >/dev/null; then
      echo "mcp-clients: npm is not installed: cannot install Node 22, the conformance suite or the TypeScript SDKs (install Debian's npm)" >&2
    else
      echo "mcp-clients: installing $stamp into $node_dir (npm)" >&2
      rm -rf "$node_dir"
      mkdir -p "$node_dir"
      printf '{"name":"mcp-gateway-test-clients","private":true}\n' >"$node_dir/package.json"
      if (cd "$node_dir" && npm install --no-audit --no-fund --loglevel=error \
            "node@$MCP_NODE_VERSION" \
            "@modelcontextprotocol/conformance@$MCP_CONFORMANCE_VERSION" \
            "@modelcontextprotocol/sdk@$MCP_TS_SDK_V1_VERSION" \
            "@modelcontextprotocol/client@$MCP_TS_SDK_V2_VERSION" >&2) \
          && "$node_dir/node_modules/.bin/node" --version >/dev/null 2>&1; then
        echo "$stamp" >"$node_dir/.installed"
      else
        echo "mcp-clients: npm could not install $stamp" >&2
      fi
    fi
  fi
  if [ -f "$node_dir/.installed" ]; then
    MCP_TEST_NODE="$node_dir/node_modules/.bin/node"
    MCP_TEST_NODE_PATH="$node_dir/node_modules"
    MCP_CONFORMANCE="$node_dir/node_modules/@modelcontextprotocol/conformance/dist/index.js"
    export MCP_TEST_NODE MCP_TEST_NODE_PATH MCP_CONFORMANCE
  fi

  local venv="$tools/py"
  if [ "$(cat "$venv/.installed" 2>/dev/null)" != "mcp==$MCP_PY_SDK_VERSION" ]; then
    if ! command -v python3 >/dev/null; then
      echo "mcp-clients: python3 is not installed: cannot install the Python MCP SDK" >&2
    else
      echo "mcp-clients: installing mcp==$MCP_PY_SDK_VERSION into $venv (pip)" >&2
      rm -rf "$venv"
      if python3 -m venv "$venv" >&2 \
          && "$venv/bin/pip" install -q --disable-pip-version-check "mcp==$MCP_PY_SDK_VERSION" >&2; then
        echo "mcp==$MCP_PY_SDK_VERSION" >"$venv/.installed"
      else
        echo "mcp-clients: could not install mcp==$MCP_PY_SDK_VERSION from PyPI (python3-venv missing, or no network)" >&2
      fi
    fi
  fi
  if [ -f "$venv/.installed" ]; then
    MCP_TEST_PYTHON="$venv/bin/python"
    export MCP_TEST_PYTHON
  fi
}
