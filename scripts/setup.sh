#!/usr/bin/env bash
# Install edge-distill into ./.venv on a fresh machine: the CPU build of torch first (so no
# package pulls a multi-GB CUDA build), then the toolkit with its full extra. `--test` adds the
# test tools and Debian's Chromium for the report's browser test. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip wheel setuptools
python -m pip install -q "torch==2.13.0"
# llama-cpp-python compiles from source (about 7 minutes on 2 cores; pip caches the wheel).
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
if [ "$want_test" = 1 ]; then
  python -m pip install -q -e ".[full,test]"
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "setup: could not install chromium; the report's browser test will fail" >&2
    else
      echo "setup: install Debian's chromium (sudo apt-get install chromium) for the report's browser test" >&2
    fi
  fi
else
  python -m pip install -q -e ".[full]"
fi
echo "setup: edge-distill installed in $(pwd)/.venv"
