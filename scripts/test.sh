#!/usr/bin/env bash
# Sets up (packages, build with -Werror) and runs every test: unit, integration,
# and the libFuzzer targets for a bounded time (BERTH_FUZZ_SECONDS each, default 20).
# Usage: scripts/test.sh [ctest args...]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${BERTH_BUILD_DIR:-$here/build}
BERTH_CMAKE_ARGS="-DBERTH_WERROR=ON -DBERTH_TESTS=ON ${BERTH_CMAKE_ARGS:-}" "$here/scripts/setup.sh" "$build"

# The machine image's Python (pyenv) has moto, boto3 and the OpenAPI validators
# the cloud fakes use; Debian's python3 does not.
for shims in "${PYENV_ROOT:-$HOME/.pyenv}/shims" /root/.pyenv/shims; do
  if [[ -d $shims && :$PATH: != *":$shims:"* ]]; then PATH="$shims:$PATH"; fi
done
export PATH

cd "$build"
status=0
ctest -L unit --output-on-failure -j2 "$@" || status=1
# Suites holding berth_tcg (the ones that boot VMs) run one at a time; the rest, and
# the fuzz targets, beside them. Each gtest suite also writes its cases' times as JSON.
export GTEST_OUTPUT="json:$build/Testing/gtest/"
ctest -L 'integration|fuzz' --output-on-failure -j2 "$@" || status=1
exit $status
