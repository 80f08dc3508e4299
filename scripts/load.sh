#!/usr/bin/env bash
# Load comparison on loopback: the same axum model server in several
# configurations, measured with wrk in one run, rounds interleaved so that
# machine noise hits every configuration alike. Prints throughput and p50/p99
# per configuration (median over rounds) and the ratio to `bare`.
#
#   scripts/load.sh [ROUNDS] [SECONDS] [MODES...]
#
# Defaults: 3 rounds of 5 s each for every mode. Installs wrk with apt-get
# when it is missing. Sends traffic only to 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-3}
SECS=${2:-5}
shift $(( $# > 2 ? 2 : $# )) || true
MODES=("$@")
if [ ${#MODES[@]} -eq 0 ]; then
    MODES=(bare router mirror10-noop mirror10 mirror10-idle compare10 mirror10-slow mirror10-hang mirror100-hang router-mirror10 router-compare10)
fi
CONNS=${CONNS:-32}

if ! command -v wrk >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --features idle --example load_server -q
BIN=target/release/examples/load_server
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

# Microseconds from wrk's "50%  1.23ms" style values.
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; gsub(/[0-9.]/, "", u);
        if (u == "us") print n; else if (u == "ms") print n * 1000;
        else if (u == "s") print n * 1000000; else print n }'
}

for round in $(seq 1 "$ROUNDS"); do
    for mode in "${MODES[@]}"; do
        "$BIN" "$mode" > "$OUT/server.log" &
        pid=$!
        for _ in $(seq 1 100); do
            grep -q "listening on" "$OUT/server.log" 2>/dev/null && break
            sleep 0.05
        done
        addr=$(sed -n 's/listening on //p' "$OUT/server.log")
        # Warm up, then measure.
        wrk -t1 -c"$CONNS" -d1s -s scripts/post.lua "http://$addr" >/dev/null
        wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s scripts/post.lua "http://$addr" > "$OUT/wrk.txt"
        kill "$pid"; wait "$pid" 2>/dev/null || true
        rps=$(awk '/Requests\/sec/ {print $2}' "$OUT/wrk.txt")
        p50=$(to_us "$(awk '$1 == "50%" {print $2}' "$OUT/wrk.txt")")
        p99=$(to_us "$(awk '$1 == "99%" {print $2}' "$OUT/wrk.txt")")
        errors=$(awk '/Non-2xx|Socket errors/ {print}' "$OUT/wrk.txt" | tr '\n' ' ')
        echo "$mode $rps $p50 $p99 $round ${errors:-ok}" >> "$OUT/results.txt"
        echo "round $round $mode: $rps req/s, p50 ${p50}us, p99 ${p99}us ${errors}" >&2
    done
done

echo
echo "$(date -u +%Y-%m-%d), $(nproc) cores, wrk -t1 -c$CONNS, ${SECS}s x $ROUNDS rounds (median), server 1 worker thread"
python3 - "$OUT/results.txt" "${MODES[@]}" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
modes = sys.argv[2:]
med = {}
for m in modes:
    r = [x for x in rows if x[0] == m]
    med[m] = tuple(statistics.median(float(x[i]) for x in r) for i in (1, 2, 3))
base = med.get("bare")
print(f"| {'configuration':<16} | {'req/s':>9} | {'p50 µs':>7} | {'p99 µs':>7} | {'req/s ÷ bare':>12} | {'p50 ÷ bare':>10} | {'p99 ÷ bare':>10} |")
print("|" + "|".join(["---"] * 7) + "|")
for m in modes:
    rps, p50, p99 = med[m]
    if base:
        ratios = f"{rps / base[0]:>12.3f} | {p50 / base[1]:>10.3f} | {p99 / base[2]:>10.3f}"
    else:
        ratios = " | ".join(["-"] * 3)
    print(f"| {m:<16} | {rps:>9.0f} | {p50:>7.0f} | {p99:>7.0f} | {ratios} |")
PY
