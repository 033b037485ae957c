#!/usr/bin/env bash
# Build the libFuzzer targets in fuzz/ on stable Rust and run each for N seconds.
#   tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, every target)
#   FUZZ_RUNS=N stops a target after N executions if that comes before SECONDS (the campaigns of
#   docs/reliability.md use FUZZ_RUNS=10000000 with 3600 s: 10 M executions or one hour).
#   FUZZ_NO_BUILD=1 skips the build (another invocation already built the binaries).
# Seeds: fuzz/corpus/<target>/ (committed, read-only here); inputs found while fuzzing go to
# fuzz/corpus-run/<target>/ and crashes to fuzz/artifacts/<target>/ (both git-ignored).
# Exit status 1 if any target found a crash, hang (>10 s per input) or OOM (>2 GiB).
# Prints one summary line per target: executions, coverage (cov/ft) and the result.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(safetensors shard_index config wav image pose ptx http)
fi
host=$(rustc -vV | sed -n 's/^host: //p')
# The flags cargo-fuzz passes (coverage counters, comparison tracing, cfg fuzzing), minus the
# address sanitizer, which needs nightly's std. Debug assertions and overflow checks are on through
# fuzz/Cargo.toml's release profile (one dependency opts out of overflow checks there).
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
# libfuzzer-sys builds on stable; RUSTC_BOOTSTRAP only allows `-Z` flags if someone adds them.
export RUSTC_BOOTSTRAP=1
# --target keeps build scripts and proc macros uninstrumented (as cargo-fuzz does).
[ -n "${FUZZ_NO_BUILD:-}" ] || (cd fuzz && cargo build --release --target "$host" $(printf -- '--bin %s ' "${targets[@]}"))
bin=fuzz/target/$host/release
fail=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus-run/$t" "fuzz/artifacts/$t"
    log=fuzz/artifacts/$t/last-run.log
    set +e
    start=$(date +%s)
    runs_arg=()
    [ -n "${FUZZ_RUNS:-}" ] && runs_arg=(-runs="$FUZZ_RUNS")
    dict=()
    [ -f "fuzz/dict/$t.dict" ] && dict=(-dict="fuzz/dict/$t.dict")
    "$bin/$t" "fuzz/corpus-run/$t" "fuzz/corpus/$t" "${dict[@]}" -max_total_time="$secs" "${runs_arg[@]}" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1
    rc=$?
    set -e
    took=$(($(date +%s) - start))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
    if [ $rc -eq 0 ]; then
        echo "fuzz $t: ${runs:-?} executions in ${took} s, ${cov:-cov: ?}, no crash ($(date -u +%F))"
    else
        echo "fuzz $t: FAILED (exit $rc) after ${runs:-?} executions in ${took} s, ${cov:-cov: ?}; see $log"
        grep -E 'ERROR|panicked|Test unit written' "$log" | head -5 || true
        fail=1
    fi
done
exit $fail
