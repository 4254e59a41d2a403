#!/usr/bin/env bash
# The container image users build (`Dockerfile`), built and run offline as Cloud Run runs it
# (issue #24): Debian's podman with runc, a stand-in for gcr.io/distroless/cc-debian12:nonroot
# assembled from Debian's packages the way distroless is, the binary built as the Dockerfile's
# build stage builds it, and the Dockerfile's own runtime stage on top. Then the scenarios in
# tests/container.rs run against the image. Needs root (apt-get, podman). Facts: README,
# "The container image".
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
# Images of earlier runs are replaced, not piled up.
trap 'rm -rf "$work"; podman image prune -f >/dev/null 2>&1 || true' EXIT

# The tools, from Debian (crun refuses this machine kind's hybrid cgroups: runc instead); the
# package lists also serve the base's download below.
apt-get update -qq
if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
  apt-get install -y -qq --no-install-recommends podman runc uidmap slirp4netns fuse-overlayfs >/dev/null
fi
# Root here lacks CAP_SYS_RESOURCE, so podman's default rlimits would fail.
cat > "$work/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF="$work/containers.conf"

# The distroless stand-in: the same packages, a passwd with nonroot 65532, no shell.
mkdir -p "$work/debs" "$work/base"
# OpenSSL's library is libssl3 up to Debian 12 and libssl3t64 after.
ssl=libssl3; apt-cache show libssl3t64 >/dev/null 2>&1 && ssl=libssl3t64
(cd "$work/debs" && apt-get download -qq libc6 libgcc-s1 libgomp1 libstdc++6 "$ssl" ca-certificates tzdata base-files netbase)
for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$work/base"; done
mkdir -p "$work/base/etc/ssl/certs" "$work/base/home/nonroot" "$work/base/tmp"
find "$work/base/usr/share/ca-certificates" -name '*.crt' -exec cat {} + > "$work/base/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$work/base/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$work/base/etc/group"
chown 65532:65532 "$work/base/home/nonroot"
chmod 1777 "$work/base/tmp"
if [ -e "$work/base/bin/sh" ] || [ -e "$work/base/usr/bin/sh" ]; then echo "the base has a shell"; exit 1; fi
# Under a name of its own, so that a later `podman build .` can never take it for distroless.
tar --numeric-owner -C "$work/base" -cf - . | podman import --change 'USER 65532:65532' - localhost/distroless-standin >/dev/null

# The build stage's work, on this machine: the same command, strip, the code cache (it replaces
# target/release/mulesoft-audit with the shipped build, which has no `demo`).
cargo build --release --locked -p mulesoft-audit-host --no-default-features
mkdir -p "$work/built/src/target/release" "$work/built/cache"
cp target/release/mulesoft-audit "$work/built/src/target/release/"
strip "$work/built/src/target/release/mulesoft-audit"
MULESOFT_AUDIT_CACHE_DIR="$work/built/cache" "$work/built/src/target/release/mulesoft-audit" precompile
tar --numeric-owner -C "$work/built" -cf - . | podman import - localhost/mulesoft-audit-built >/dev/null

# The Dockerfile's runtime stage, as users build it, from those.
podman build --isolation chroot --pull=never --build-arg BUILT=localhost/mulesoft-audit-built \
  --build-arg BASE=localhost/distroless-standin -t localhost/mulesoft-audit:test .
podman image inspect localhost/mulesoft-audit:test --format 'image size: {{.Size}} bytes'

MULESOFT_AUDIT_IMAGE=localhost/mulesoft-audit:test \
  cargo test -p mulesoft-audit-host --features container-tests --test container
