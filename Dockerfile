# mulesoft-audit for Cloud Run: `serve` (Pub/Sub push) by default, or `run` as a Cloud Run job.
# Multi-stage: build with the pinned toolchain, ship the binary on a small non-root runtime image
# with the component's compiled code already in its cache.
#
# The runtime image takes the binary and its code cache from the stage BUILT names: `build`
# below, or an image holding the same two paths (`/src/target/release/mulesoft-audit`, `/cache`).
# CI builds them on its machine, as `build` does, and builds this very runtime stage from them
# offline (tests/container.sh).
ARG BUILT=build
# The runtime base; CI names a stand-in it assembles from Debian's packages (offline).
ARG BASE=gcr.io/distroless/cc-debian12:nonroot

FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN rustup target add wasm32-wasip2
COPY . .
# Without the `demo` feature: the shipped binary carries no simulator.
RUN cargo build --release --locked -p mulesoft-audit-host --no-default-features \
    && strip target/release/mulesoft-audit \
    && mkdir -p /cache \
    && MULESOFT_AUDIT_CACHE_DIR=/cache target/release/mulesoft-audit precompile

FROM ${BUILT} AS built

FROM ${BASE}
COPY --from=built /src/target/release/mulesoft-audit /usr/local/bin/mulesoft-audit
COPY --from=built --chown=65532:65532 /cache /var/cache/mulesoft-audit
ENV MULESOFT_AUDIT_CACHE_DIR=/var/cache/mulesoft-audit \
    MULESOFT_AUDIT_LOG_FORMAT=json
USER 65532:65532
EXPOSE 8080
# The binary is PID 1: it handles SIGTERM itself (a pass in flight gets 7 s, then is recorded as
# stopped), so no init is needed.
ENTRYPOINT ["/usr/local/bin/mulesoft-audit"]
CMD ["serve"]
