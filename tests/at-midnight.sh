#!/usr/bin/env bash
# The whole suite again with every process's clock set back to a minute before the last UTC midnight,
# so that passes cross a day boundary while they run: objects split by day, windows ending in
# another day than they start. A test that assumes the time of day fails here. The clock is
# shifted by libfaketime, whose library the PyPI package `libfaketime` carries; the test harness
# hands its variables on to every process it starts.
#
# Back, not ahead: file times stay real, and a lock file must not look older than it is.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet libfaketime==3.0.1
lib=$(echo "$PWD"/.venv/lib/python3*/site-packages/libfaketime/vendor/libfaketime/src/libfaketime.so.1)
[ -f "$lib" ] || { echo "error: libfaketime.so.1 not found in .venv (PyPI package libfaketime)" >&2; exit 2; }

# Built with the real clock, so that only the tests see the shifted one (the edge components too,
# which the suite builds with edge/build.sh when they are missing).
cargo test --workspace --all-targets --no-run
edge/build.sh
edge/build.sh --config
offset=$(( $(date -ud "today 00:00" +%s) - 60 - $(date +%s) ))
echo "clock shifted by ${offset} s: the tests start at $(FAKETIME="${offset}" LD_PRELOAD="$lib" date -u)"
# --all-targets: no doc-tests (there are none), whose rustdoc stalls under libfaketime.
FAKETIME="${offset}" FAKETIME_DONT_FAKE_MONOTONIC=1 LD_PRELOAD="$lib" cargo test --workspace --all-targets
