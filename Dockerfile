# syntax=docker/dockerfile:1
# The MCP Gateway's binaries in one small image: mcp-gateway (the HTTP service), mcp-sync (the
# sync loops, when run apart from the gateway) and mcpctl (the command-line client).
#
#   docker build -t mcp-gateway .
#   docker run --rm -p 127.0.0.1:8001:8001 -e DATABASE_URL=… -e REDIS_URL=… -e JWT_SECRET=… mcp-gateway
#
# The migrations are embedded in the binaries (applied at start, or by `mcp-gateway migrate`).

# ---- build ------------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the registry and the target directory between builds on one machine.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p mcp-gateway -p mcp-sync -p mcpctl \
    && mkdir -p /out \
    && for b in mcp-gateway mcp-sync mcpctl; do cp "target/release/$b" /out/; done

# ---- run --------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
# curl for the health check; ca-certificates for TLS to managed Postgres/Redis. Versions are
# pinned to bookworm's series (a glob, so that Debian's security updates still apply).
RUN apt-get update \
    && apt-get install -y --no-install-recommends 'ca-certificates=202*' 'curl=7.88.*' \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin mcp \
    && install -d -o 10001 -g 10001 /var/lib/mcp-gateway
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
# In a container the gateway listens on every interface; the port is published by compose (or
# `docker run -p`) on 127.0.0.1 only. Set JWT_SECRET: without it the gateway refuses to listen
# beyond loopback.
# Without DATABASE_URL/REDIS_URL the image runs the embedded mode (one container) and keeps
# its SQLite file in the volume below.
ENV MCP_GATEWAY_HOST=0.0.0.0 \
    MCP_GATEWAY_PORT=8001 \
    LOG_FORMAT=json \
    DATA_DIR=/var/lib/mcp-gateway
VOLUME ["/var/lib/mcp-gateway"]
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8001/health"]
CMD ["mcp-gateway"]
