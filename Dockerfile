# syntax=docker/dockerfile:1
#
# The `ingest` image (or, with --build-arg BIN=firehose-local, the development Firehose).
#
#   docker build -t ingest .
#   docker build --build-arg BIN=firehose-local -t firehose-local .
#
# ingest is built with --no-default-features (build arg CARGO_FEATURE_FLAGS): no embedded local
# Firehose, so the image refuses to start without FIREHOSE_DELIVERY_STREAM.
#
# Stages: chef (toolchain + cargo-chef) -> planner (dependency recipe from the manifests only)
# -> builder (dependencies cooked in their own layer, so source edits rebuild only our crates)
# -> runtime (distroless, non-root, the one binary and CA certificates, nothing else).
# No secrets are needed or copied: the build reads only crates.io.

ARG RUST_VERSION=1.95
# The Debian release of both the builder (rust:<version>-slim-<codename>) and the runtime
# (distroless cc-debian<number>): change the two together, so the glibc the binary links against
# is the one it runs with. Debian 13 (trixie): distroless stops patching its Debian 12 images a
# year after Debian 13's release (2025-08-09), and Debian 12's regular security support ended
# in June 2026.
ARG DEBIAN_RELEASE=trixie
ARG DISTROLESS_DEBIAN=debian13

# Build stage, never shipped: the OCI labels live on the runtime stage.
# hadolint ignore=DL3049
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
# make: tikv-jemalloc-sys (ingest's allocator) builds jemalloc with it; the slim image has gcc
# but not make.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
# cargo-chef from crates.io, pinned and with its own lock file.
RUN cargo install --locked cargo-chef@0.1.78
WORKDIR /src

# Build stage, never shipped: the OCI labels live on the runtime stage.
# hadolint ignore=DL3049
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# Build stage, never shipped: the OCI labels live on the runtime stage.
# hadolint ignore=DL3049
FROM chef AS builder
ARG BIN=ingest
# Cargo feature flags for BIN, the same for the cooked dependencies and the build (else the
# build recompiles what cook cached). The default leaves out ingest's embedded local Firehose
# (feature `embedded`, development only; a production image must not contain it);
# firehose-local has no default features, so it builds the same either way. Split into words
# on purpose; --build-arg CARGO_FEATURE_FLAGS= builds with the default features.
ARG CARGO_FEATURE_FLAGS=--no-default-features
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only: this layer is cached until Cargo.toml or Cargo.lock change.
RUN cargo chef cook --release --locked --recipe-path recipe.json --package "${BIN}" \
    ${CARGO_FEATURE_FLAGS}
COPY . .
RUN cargo build --release --locked --package "${BIN}" --bin "${BIN}" ${CARGO_FEATURE_FLAGS} \
    && install -D -m 0755 "target/release/${BIN}" /out/app

FROM gcr.io/distroless/cc-${DISTROLESS_DEBIAN}:nonroot AS runtime
# No HEALTHCHECK: distroless has no shell or curl to run one, and Kubernetes ignores it anyway;
# the chart probes GET /healthz and /readyz on the admin port instead.
# checkov:skip=CKV_DOCKER_2: health is checked by Kubernetes probes on the admin port (see chart)
ARG BIN=ingest
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="${BIN}" \
      org.opencontainers.image.description="Front door that puts JSON events into Amazon Data Firehose (and on to New Relic)" \
      org.opencontainers.image.source="https://github.com/example/firehose-newrelic" \
      org.opencontainers.image.url="https://github.com/example/firehose-newrelic" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.vendor="firehose-newrelic"
COPY --from=builder /out/app /usr/local/bin/app
# distroless "nonroot" is UID/GID 65532; the chart runs the pod as the same IDs.
USER 65532:65532
# Public listener and admin listener (health, readiness, metrics).
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/app"]
