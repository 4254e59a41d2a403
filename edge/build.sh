#!/usr/bin/env bash
# Builds the edge component: the trigger, the collector and the store, each a component, composed
# with wac (pinned, installed into target/tools on first use) into one component that exports
# wasi:http/incoming-handler and imports only what WASI runtimes offer:
#   target/edge/mulesoft-audit-edge.wasm          settings from the environment
# With --config, settings from the runtime's wasi:config/store@0.2.0-rc.1 too (over the
# environment), for runtimes that keep secrets there:
#   target/edge/mulesoft-audit-edge-config.wasm
# `just edge` runs this; so does the test suite, which runs the result under `wasmtime serve`.
set -euo pipefail
cd "$(dirname "$0")/.."

features=() name=mulesoft-audit-edge
case "${1:-}" in
  "") ;;
  --config) features=(--features mulesoft-audit-store/wasi-config,mulesoft-audit-trigger/wasi-config) name=mulesoft-audit-edge-config ;;
  *) echo "usage: edge/build.sh [--config]" >&2; exit 2 ;;
esac

WAC_VERSION=0.12.0
cargo=${CARGO:-cargo}
target=wasm32-wasip2
out=target/edge
# Flags meant for a native build must not leak into the wasm builds.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_TARGET CARGO_TARGET_DIR RUSTC_WORKSPACE_WRAPPER

# rust-toolchain.toml names the target, but rustup adds listed targets only with the toolchain.
# Without rustup (a distribution's toolchain), the target must already be there.
if command -v rustup > /dev/null; then
  rustup target list --installed | grep -qx "$target" || rustup target add "$target"
fi

# The collector exactly as the host embeds it (host/build.rs builds the same into the same place).
"$cargo" build -p mulesoft-audit --target "$target" --profile component --target-dir target/component
# The store and the trigger use the engine without its collector export: a target dir of their
# own, or cargo's feature unification would give the store the collector's export as well.
# With --config, a target dir of their own too, so that the two variants do not rebuild each other.
store_dir="$out${features:+-config}"
# (`${a[@]+"${a[@]}"}`: an empty array under `set -u` on bash before 4.4, macOS's included.)
"$cargo" build -p mulesoft-audit-store -p mulesoft-audit-trigger ${features[@]+"${features[@]}"} --target "$target" --profile component --target-dir "$store_dir"

wac="target/tools/bin/wac"
if ! [ -x "$wac" ] || [ "$("$wac" --version)" != "wac-cli $WAC_VERSION" ]; then
  "$cargo" install --locked --no-default-features --root target/tools "wac-cli@$WAC_VERSION"
fi
built="$store_dir/$target/component"
mkdir -p "$out"
# The store fills the collector's object-store import; that fills the trigger's collector import.
"$wac" plug --plug "$built/mulesoft_audit_store.wasm" "target/component/$target/component/mulesoft_audit.wasm" -o "$out/$name-core.wasm"
"$wac" plug --plug "$out/$name-core.wasm" "$built/mulesoft_audit_trigger.wasm" -o "$out/$name.wasm"
rm "$out/$name-core.wasm"
ls -l "$out/$name.wasm"
