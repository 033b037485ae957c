#!/usr/bin/env bash
# The layout contract of docs/kernels.md (every kernels/cuda/NAME.cu has its PTX, report, launcher,
# CPU reference, test, bench and catalogue row) and no module import cycles in
# engine/src/backends/cuda or among engine/src's top-level modules. Plain Python, no cargo.
#   tools/check_layout.sh               # check the tree
#   tools/check_layout.sh --self-test   # check the checker on synthetic trees
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 tools/kernels/check_layout.py "$@"
