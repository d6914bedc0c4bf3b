#!/bin/sh
# run.sh - builds the libFuzzer targets of tests/fuzz (clang, ASan, UBSan,
# LeakSanitizer) and runs each one.
#
#   tests/fuzz/run.sh SECONDS         each target for SECONDS
#   tests/fuzz/run.sh --runs N        each target for N executions
#   PYROMETER_FUZZ_TARGETS="fuzz_wire" tests/fuzz/run.sh ...   only those
#
# Prints one line per target, "target NAME: N execs in S s, ...", and exits
# nonzero on any finding (crash, sanitizer report, leak, timeout); the input
# that caused it is kept as build-fuzz/findings/NAME-crash-* and its report
# printed. The corpus grows across runs in build-fuzz/corpus/NAME, seeded
# each time from the unit tests' data cases (tests/fuzz/seeds.py). Once
# fixed, a finding becomes a data case in tests/unit.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${PYROMETER_FUZZ_BUILD:-$ROOT/build-fuzz}
TARGETS=${PYROMETER_FUZZ_TARGETS:-fuzz_wire fuzz_connection fuzz_transform fuzz_options}

case ${1:-} in
    --runs) LIMIT="-runs=${2:?usage: run.sh --runs N}"; WHAT="${2} runs" ;;
    ''|*[!0-9]*) echo "usage: $0 SECONDS | --runs N" >&2; exit 2 ;;
    *) LIMIT="-max_total_time=$1"; WHAT="$1 s" ;;
esac

if [ ! -f "$BUILD/build.ninja" ]; then
    mkdir -p "$BUILD"
    CC=clang meson setup "$BUILD" "$ROOT" -Dfuzzing=true -Db_sanitize=address,undefined \
        -Db_lundef=false -Dstatic_deps=disabled -Dbuildtype=debugoptimized \
        >"$BUILD/setup.log" 2>&1 || { cat "$BUILD/setup.log" >&2; exit 1; }
fi
# shellcheck disable=SC2086
ninja -C "$BUILD" $(for t in $TARGETS; do printf 'tests/fuzz/%s ' "$t"; done) >/dev/null || {
    echo "run.sh: the fuzz build failed" >&2; exit 1; }

SEEDS="$BUILD/seeds"
rm -rf "$SEEDS"
/usr/bin/python3 "$ROOT/tests/fuzz/seeds.py" "$SEEDS" >/dev/null || exit 1
mkdir -p "$BUILD/findings"

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"
# fuzz_options embeds CPython, which keeps its own allocations at exit.
export LSAN_OPTIONS="suppressions=$ROOT/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
failed=0
for t in $TARGETS; do
    corpus="$BUILD/corpus/$t"
    log="$BUILD/findings/$t.log"
    mkdir -p "$corpus"
    dict=""
    [ -f "$ROOT/tests/fuzz/$t.dict" ] && dict="-dict=$ROOT/tests/fuzz/$t.dict"
    # shellcheck disable=SC2086
    "$BUILD/tests/fuzz/$t" $LIMIT -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$BUILD/findings/$t-" $dict "$corpus" "$SEEDS/$t" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    if [ $rc -eq 0 ]; then
        echo "target $t: ${execs:-0} execs in ${secs:-?} s ($WHAT asked), coverage ${cov:-?} edges, corpus $(ls "$corpus" | wc -l) inputs, no findings"
    else
        failed=1
        echo "target $t: FINDING after ${execs:-?} execs (exit $rc); report:"
        grep -E 'ERROR|SUMMARY|runtime error|Test unit written|^    #[0-9]' "$log" | head -30
    fi
done
exit $failed
