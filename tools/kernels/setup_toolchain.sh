#!/usr/bin/env bash
# Installs the pinned CUDA toolchain used to build kernels/ptx/*.ptx into .toolchain/cuda
# (gitignored). Nothing here runs at `cargo build` time; `cargo build` never needs CUDA.
#
#   nvidia-cuda-nvrtc-cu12   12.4.127  libnvrtc.so.12 (+ builtins): .cu -> PTX
#   nvidia-cuda-runtime-cu12 12.4.127  headers (cuda_bf16.h, cuda_fp16.h, ...)
#   nvidia-cuda-nvcc-cu12    12.4.131  ptxas (register / smem / spill reports)
#
# Idempotent: when the stamp matches the pinned versions and the key files exist it returns at once.
# Usage: tools/kernels/setup_toolchain.sh [--force]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="$ROOT/.toolchain/cuda"
PKGS=(
  "nvidia-cuda-nvrtc-cu12==12.4.127"
  "nvidia-cuda-runtime-cu12==12.4.127"
  "nvidia-cuda-nvcc-cu12==12.4.131"
)
STAMP_TEXT="$(printf '%s\n' "${PKGS[@]}")"
STAMP="$DEST/.installed"
PYTHON="${PYTHON:-python3}"

have_all() {
  [[ -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$STAMP_TEXT" ]] \
    && ls "$DEST"/nvidia/cuda_nvrtc/lib/libnvrtc.so* >/dev/null 2>&1 \
    && [[ -f "$DEST/nvidia/cuda_runtime/include/cuda_bf16.h" ]] \
    && [[ -x "$DEST/nvidia/cuda_nvcc/bin/ptxas" ]]
}

if [[ "${1:-}" != "--force" ]] && have_all; then
  echo "toolchain: already installed in .toolchain/cuda"
  exit 0
fi

rm -rf "$DEST"
mkdir -p "$DEST"
echo "toolchain: installing ${PKGS[*]} into .toolchain/cuda"
"$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --no-compile \
  --target "$DEST" "${PKGS[@]}"
chmod +x "$DEST"/nvidia/cuda_nvcc/bin/* 2>/dev/null || true

printf '%s\n' "${PKGS[@]}" > "$STAMP"
if ! have_all; then
  echo "toolchain: install finished but expected files are missing under .toolchain/cuda" >&2
  echo "  (need nvidia/cuda_nvrtc/lib/libnvrtc.so*, nvidia/cuda_runtime/include/cuda_bf16.h," >&2
  echo "   nvidia/cuda_nvcc/bin/ptxas); rerun with --force" >&2
  exit 1
fi
"$DEST/nvidia/cuda_nvcc/bin/ptxas" --version | tail -1
echo "toolchain: ok"
