# syntax=docker/dockerfile:1
#
# activity-sync: one image, every role (scheduler, worker, topics, accounts, tail, github-sim) is a subcommand.
#
#   docker build -t activity-sync .
#   docker run --rm activity-sync --help
#
# Both stages are Ubuntu 24.04 (noble) on purpose. Its librdkafka is 2.3.0; Debian bookworm ships 2.0.2, which
# misparses the tagged fields that some brokers (Kafka 3.7+/4.x among them) put in their ApiVersions reply and
# then falls back to wrong protocol versions. Building and running against the same distribution also keeps the
# librdkafka headers we compile against identical to the shared library we load.

ARG SWIFT_IMAGE=swift:6.3-noble
ARG RUNTIME_IMAGE=ubuntu:24.04
# Only the runtime-node target uses it: the node binary for external integrations (docs/integrations.md).
ARG NODE_IMAGE=node:20-bookworm-slim

# ---------------------------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS node

# ---------------------------------------------------------------------------------------------------------------
FROM ${SWIFT_IMAGE} AS build

RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get update \
    && apt-get install -y --no-install-recommends librdkafka-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Resolve dependencies in their own layer so that editing a source file does not refetch every package.
COPY Package.swift ./
RUN swift package resolve

COPY Sources ./Sources
COPY Tests ./Tests
# --static-swift-stdlib links the Swift runtime and Foundation into the binary, so the runtime image needs no
# Swift toolchain; librdkafka stays a shared library from the distribution (security updates via apt).
RUN swift build -c release --static-swift-stdlib --product activity-sync \
    && install -D "$(swift build -c release --show-bin-path)/activity-sync" /out/activity-sync \
    && strip /out/activity-sync

# ---------------------------------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime

# librdkafka1 pulls in its own dependencies (libssl3, libsasl2, zstd, lz4, zlib); libstdc++6 and libc, which the
# statically linked Swift runtime still needs, are part of the base image. ca-certificates is needed for
# https://api.github.com and TLS brokers; tzdata for correct local-time logging in operators' tools.
# No curl: the healthcheck below uses bash's /dev/tcp instead, which keeps the image free of an HTTP client an
# attacker could use.
RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get update \
    && apt-get install -y --no-install-recommends librdkafka1 ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 activity-sync \
    && useradd --system --uid 10001 --gid activity-sync --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin activity-sync

COPY --from=build /out/activity-sync /usr/local/bin/activity-sync
COPY deploy/healthcheck.sh /usr/local/bin/activity-sync-healthcheck

# Numeric ids so Kubernetes' runAsNonRoot can verify the user without reading /etc/passwd.
USER 10001:10001

# The metrics/health port the healthcheck probes. Compose and the Kubernetes manifests pass
# `--metrics-port 9090` explicitly; set ACTIVITY_SYNC_HEALTH_PORT if you change it.
ENV ACTIVITY_SYNC_HEALTH_PORT=9090
EXPOSE 9090

# GET /healthz over bash's /dev/tcp (see deploy/healthcheck.sh). One-shot commands (topics create, accounts …)
# and the simulator have no health server: compose disables or replaces the check for those services.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/activity-sync-healthcheck"]

# No init: the worker runs as PID 1 and is its own reaper (PR_SET_CHILD_SUBREAPER; it kills and reaps whatever an
# integration CLI leaves, setsid descendants included — docs/integrations.md, "What the runtime does").
ENTRYPOINT ["/usr/local/bin/activity-sync"]
CMD ["--help"]

# ---------------------------------------------------------------------------------------------------------------
# The worker image for external integrations written in Node (SDK CLIs such as Linear or Slack):
#
#   docker build --target runtime-node -t activity-sync:node .
#
# Only the node binary of the official image (glibc ≥ 2.28, so it runs on noble), no npm: integrations ship
# bundled and are added in a derived image or a read-only volume, with the integrations file beside them
# (ACTIVITY_SYNC_INTEGRATIONS_FILE). See docs/integrations.md.
FROM runtime AS runtime-node
COPY --from=node /usr/local/bin/node /usr/local/bin/node

# ---------------------------------------------------------------------------------------------------------------
# The default target (last stage): the runtime image as above, without Node.
FROM runtime
