// A small MCP client on an official TypeScript SDK, for the gateway's tests
// (crates/gateway/tests/official_clients.rs). CommonJS, so that NODE_PATH finds the SDKs that
// scripts/test.sh installs under the target directory.
//
//   node ts_client.cjs <v1|v2> <case> <url> '<json args>'
//
// v1 is `@modelcontextprotocol/sdk` 1.x, v2 is `@modelcontextprotocol/client` 2.x. It prints
// one JSON object per line on stdout; the test reads them. Cases:
//   call       {protocol, tool, arguments}: connects, lists the tools (so the SDK knows their
//              output schemas), calls the tool, prints {result} (or {error} when the SDK
//              throws, e.g. on a schema check).
//   oauth      {client_id, client_secret, issuer, tool, arguments}: connects with the SDK's
//              client-credentials provider and no token: the SDK follows the 401 to the
//              resource metadata and the issuer, obtains a token, calls the tool: {result}.
//   subscribe  {uri}: 2025-11-25 session, resources/subscribe, prints {event:"ready"}, then
//              {event:"updated", uri} for each notification; runs until stdin closes.
'use strict';

const [sdk, kase, url, rawArgs] = process.argv.slice(2);
const args = JSON.parse(rawArgs || '{}');

// The installed version of a package (its package.json is not always exported).
function versionOf(name) {
  const fs = require('fs');
  const path = require('path');
  const file = path.join(process.env.NODE_PATH || '', name, 'package.json');
  return JSON.parse(fs.readFileSync(file, 'utf8')).version;
}

function out(value) {
  process.stdout.write(JSON.stringify(value) + '\n');
}

function load() {
  if (sdk === 'v1') {
    const { Client } = require('@modelcontextprotocol/sdk/client/index.js');
    const { StreamableHTTPClientTransport } = require('@modelcontextprotocol/sdk/client/streamableHttp.js');
    const { ClientCredentialsProvider } = require('@modelcontextprotocol/sdk/client/auth-extensions.js');
    const { ResourceUpdatedNotificationSchema } = require('@modelcontextprotocol/sdk/types.js');
    const version = versionOf('@modelcontextprotocol/sdk');
    return {
      version,
      Client,
      StreamableHTTPClientTransport,
      ClientCredentialsProvider,
      onUpdated: (client, handler) => client.setNotificationHandler(ResourceUpdatedNotificationSchema, handler),
      options: () => ({ capabilities: {} }),
    };
  }
  if (sdk === 'v2') {
    const m = require('@modelcontextprotocol/client');
    const version = versionOf('@modelcontextprotocol/client');
    return {
      version,
      Client: m.Client,
      StreamableHTTPClientTransport: m.StreamableHTTPClientTransport,
      ClientCredentialsProvider: m.ClientCredentialsProvider,
      onUpdated: (client, handler) => client.setNotificationHandler('notifications/resources/updated', handler),
      options: (protocol) => ({
        capabilities: {},
        versionNegotiation: protocol === '2026-07-28' ? { mode: { pin: '2026-07-28' } } : { mode: 'legacy' },
      }),
    };
  }
  throw new Error(`unknown SDK ${sdk} (v1 or v2)`);
}

async function main() {
  const s = load();
  out({ event: 'sdk', sdk, version: s.version });
  const client = new s.Client({ name: `gateway-test-${sdk}`, version: '0' }, s.options(args.protocol));
  const transportOptions = {
    // Reconnect soon after a lost stream (the default is 1 s, growing).
    reconnectionOptions: { initialReconnectionDelay: 200, maxReconnectionDelay: 1000, reconnectionDelayGrowFactor: 1.5, maxRetries: 20 },
  };
  if (kase === 'oauth') {
    transportOptions.authProvider = new s.ClientCredentialsProvider({
      clientId: args.client_id,
      clientSecret: args.client_secret,
      expectedIssuer: args.issuer,
    });
  }
  const transport = new s.StreamableHTTPClientTransport(new URL(url), transportOptions);
  transport.onerror = (e) => out({ event: 'transport_error', message: String(e && e.message || e) });
  if (kase === 'subscribe') {
    s.onUpdated(client, (n) => out({ event: 'updated', uri: n.params.uri }));
  }
  await client.connect(transport);
  out({ event: 'connected', protocol: transport.protocolVersion || null });
  switch (kase) {
    case 'call':
    case 'oauth': {
      try {
        // As model hosts do: list the tools first (the SDK then checks results against
        // each tool's output schema).
        await client.listTools();
        const result = await client.callTool({ name: args.tool, arguments: args.arguments });
        out({ result });
      } catch (e) {
        out({ error: String(e && e.message || e), code: e && e.code });
      }
      await client.close();
      break;
    }
    case 'subscribe': {
      await client.subscribeResource({ uri: args.uri });
      out({ event: 'ready' });
      // Until the test closes stdin.
      process.stdin.resume();
      await new Promise((resolve) => process.stdin.on('end', resolve));
      await client.close();
      break;
    }
    default:
      throw new Error(`unknown case ${kase}`);
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    out({ fatal: String(e && e.stack || e) });
    process.exit(1);
  },
);
