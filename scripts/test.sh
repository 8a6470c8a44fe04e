#!/usr/bin/env bash
# Sets up (packages, build with -Werror) and runs every test: unit, integration,
# then the libFuzzer targets for a bounded time (BERTH_FUZZ_SECONDS each, default 45).
# Usage: scripts/test.sh [ctest args...]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${BERTH_BUILD_DIR:-$here/build}
BERTH_CMAKE_ARGS="-DBERTH_WERROR=ON ${BERTH_CMAKE_ARGS:-}" "$here/scripts/setup.sh" "$build"

cd "$build"
status=0
ctest -L unit --output-on-failure -j2 "$@" || status=1
ctest -L integration --output-on-failure "$@" || status=1
ctest -L fuzz --output-on-failure "$@" || status=1
exit $status
