#!/usr/bin/env bash
# The project's test command (README, CI): every unit, integration, fixture,
# emulator and stand-in-driver test. Needs no GPU and no CUDA install.
#   0. the layout contract and module-cycle check (seconds, no cargo),
#   1. runtime tools (ffmpeg) for the end-to-end tests,
#   2. the pinned NVRTC/ptxas toolchain and the PTX drift check,
#   3. cargo test over the whole workspace (kernel tests straight on the emulator),
#   4. the kernel tests again through cudarc on the stand-in CUDA driver,
#   5. one full tiny clip on the CUDA backend through the stand-in (PTX_EMU_CHECKS=fast), its
#      decoded frames against the CPU reference (tests/cuda_clip.rs; minutes of one core).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/check_layout.sh --self-test
tools/check_layout.sh
tools/setup.sh
tools/kernels/setup_toolchain.sh
python3 tools/kernels/build_ptx.py --check
cargo test --workspace --all-targets --no-fail-fast "$@"
CYBERHOST_KERNEL_TEST_DEVICE=stand-in cargo test --workspace --test kernels "$@"
cargo test --workspace --test cuda_clip -- --ignored
