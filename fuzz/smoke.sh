#!/usr/bin/env bash
# Runs every fuzz target briefly (20 s each by default), without sanitizers so
# that the stable toolchain works. Exits non-zero on the first crash or
# invariant violation; the input is left in fuzz/artifacts/<target>/.
#
#   fuzz/smoke.sh                           # every target, 20 s each
#   FUZZ_SECONDS=60 fuzz/smoke.sh headers   # chosen targets, 60 s each
set -euo pipefail

cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-20}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build --sanitizer none
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for target in "${targets[@]}"; do
    echo "== fuzz $target (${seconds}s)" >&2
    status=0
    cargo fuzz run --sanitizer none "$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::average_exec_per_sec)' "$log" >&2 || true
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$log" >&2
        echo "fuzz target $target failed (exit $status); input in fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
echo "fuzz smoke: ${#targets[@]} targets, ${seconds}s each, no crash" >&2
