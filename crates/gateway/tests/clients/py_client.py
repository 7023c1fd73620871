"""A small MCP client on the official Python SDK (`mcp` from PyPI), for the gateway's tests
(crates/gateway/tests/official_clients.rs); run with the venv's python that scripts/test.sh
makes.

    python py_client.py <case> <url> '<json args>'

It prints one JSON object per line on stdout; the test reads them. Cases (as ts_client.cjs):
  call       {protocol, tool, arguments} -> {result} or {error}
  oauth      {client_id, client_secret, issuer, tool, arguments} -> {result} or {error}
  subscribe  {uri} -> {event: "ready"}, then {event: "updated", uri} per notification, until
             stdin closes.
"""

import asyncio
import json
import sys
import warnings
from importlib.metadata import version

import anyio
import mcp_types as types
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPDeprecationWarning

# resources/subscribe is deprecated for 2026-07-28 only; this client speaks 2025-11-25 there.
warnings.simplefilter("ignore", MCPDeprecationWarning)


def out(value):
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


class MemoryStorage:
    def __init__(self):
        self.tokens = None
        self.client_info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


def result_json(result):
    return result.model_dump(mode="json", by_alias=True, exclude_none=True)


async def call(client, args):
    try:
        # As model hosts do: list the tools first (the SDK then checks results against each
        # tool's output schema).
        await client.list_tools()
        result = await client.call_tool(args["tool"], args.get("arguments") or {})
        out({"result": result_json(result)})
    except Exception as e:  # the SDK refused the answer: what the test must never see
        out({"error": f"{type(e).__name__}: {e}"})


async def main():
    kase, url = sys.argv[1], sys.argv[2]
    args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    out({"event": "sdk", "sdk": "python", "version": version("mcp")})
    mode = "2026-07-28" if args.get("protocol") == "2026-07-28" else "legacy"

    if kase == "oauth":
        provider = ClientCredentialsOAuthProvider(
            server_url=url,
            storage=MemoryStorage(),
            client_id=args["client_id"],
            client_secret=args["client_secret"],
            issuer=args["issuer"],
        )
        transport = streamable_http_client(url, http_client=create_mcp_http_client(auth=provider))
        async with Client(transport, mode=mode) as client:
            out({"event": "connected", "protocol": client.protocol_version})
            await call(client, args)
        return

    if kase == "call":
        async with Client(url, mode=mode) as client:
            out({"event": "connected", "protocol": client.protocol_version})
            await call(client, args)
        return

    if kase == "subscribe":

        async def on_message(message):
            if isinstance(message, types.ResourceUpdatedNotification):
                out({"event": "updated", "uri": str(message.params.uri)})
            elif isinstance(message, Exception):
                out({"event": "transport_error", "message": str(message)})

        async with Client(url, mode="legacy", message_handler=on_message) as client:
            out({"event": "connected", "protocol": client.protocol_version})
            await client.subscribe_resource(args["uri"])
            out({"event": "ready"})
            # Until the test closes stdin.
            await anyio.to_thread.run_sync(sys.stdin.read)
        return

    raise SystemExit(f"unknown case {kase}")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except BaseException as e:  # noqa: BLE001 - the test reads what went wrong
        if not isinstance(e, SystemExit):
            out({"fatal": f"{type(e).__name__}: {e}"})
            sys.exit(1)
        raise
