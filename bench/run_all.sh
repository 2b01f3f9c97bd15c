#!/usr/bin/env bash
# Every figure of issue 25 as JSON, one benchmark after the other, for an idle machine (nothing else running:
# the figures are timings). Writes into OUT (default /tmp/reconciler-bench-<UTC time>), one file per benchmark,
# and prints where. Each benchmark cleans up its own objects; a failed one stops the run (set -e), leaving the
# files of those before it.
#
#   bench/run_all.sh [OUT]              the issue's sizes: N = 50, 500, 1,000; 12 engines x 20 containers;
#                                       validate 5,000 / 20,000 / 50,000; a watch over 1,000: 5 minutes idle, edits, repairs
#   BENCH_SMALL=1 bench/run_all.sh      the same steps at small sizes (N = 10, 4 engines x 5, validate 1,000):
#                                       checks that everything runs, in about 8 minutes on a busy machine
#
# Sizes can be set one by one: BENCH_SIZES (compose_peer's N list), BENCH_REPS / BENCH_LARGE_REPS (at N <= 50 /
# above), BENCH_WATCH_IDLE (seconds of the idle watch in each compose_peer repetition), BENCH_IDLE_N and
# BENCH_IDLE_SECONDS and BENCH_RESYNC (watch_scale.py's idle window and resync), BENCH_FLOOR_SIZES, BENCH_ENGINES, BENCH_CONTAINERS,
# BENCH_VALIDATE (space-separated), BENCH_LATENCY_REPS. PYTHON: the interpreter (default <repo>/.venv/bin/python).
# Needs the engine of scripts/testenv.sh; fleet_scale.py runs as root and starts scripts/fleetenv.sh's engines.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY=${PYTHON:-$REPO/.venv/bin/python}
OUT=${1:-/tmp/reconciler-bench-$(date -u +%Y%m%dT%H%M%SZ)}

if [[ ${BENCH_SMALL:-0} == 1 ]]; then
	defaults=(10 1 1 5 10 10 10 4 5 "1000" 3)
else
	defaults=(50,500,1000 3 2 30 1000 300 50,500,1000 12 20 "5000 20000 50000" 20)
fi
SIZES=${BENCH_SIZES:-${defaults[0]}}
REPS=${BENCH_REPS:-${defaults[1]}}
LARGE_REPS=${BENCH_LARGE_REPS:-${defaults[2]}}
WATCH_IDLE=${BENCH_WATCH_IDLE:-${defaults[3]}}
IDLE_N=${BENCH_IDLE_N:-${defaults[4]}}
IDLE_SECONDS=${BENCH_IDLE_SECONDS:-${defaults[5]}}
FLOOR_SIZES=${BENCH_FLOOR_SIZES:-${defaults[6]}}
ENGINES=${BENCH_ENGINES:-${defaults[7]}}
CONTAINERS=${BENCH_CONTAINERS:-${defaults[8]}}
VALIDATE=${BENCH_VALIDATE:-${defaults[9]}}
LATENCY_REPS=${BENCH_LATENCY_REPS:-${defaults[10]}}
if [[ ${BENCH_SMALL:-0} == 1 ]]; then RESYNC=${BENCH_RESYNC:-12}; else RESYNC=${BENCH_RESYNC:-300}; fi

mkdir -p "$OUT"
cd "$REPO"
step() {
	printf '\n== %s (%s UTC)\n' "$1" "$(date -u +%H:%M:%S)" >&2
}
uptime >"$OUT/load-before.txt"

step "reconcile vs Compose vs the engine alone, N = $SIZES"
"$PY" bench/compose_peer.py --sizes "$SIZES" --reps "$REPS" --large-reps "$LARGE_REPS" \
	--watch-idle "$WATCH_IDLE" --out "$OUT/compose_peer.json"

step "watch over $IDLE_N containers: idle for $IDLE_SECONDS s, its resync, edits applied, rm -f repaired"
"$PY" bench/watch_scale.py -n "$IDLE_N" --idle "$IDLE_SECONDS" --reps "$LATENCY_REPS" --resync "$RESYNC" \
	--out "$OUT/watch_scale.json"

step "the engine alone at 8 and N threads, N = $FLOOR_SIZES"
"$PY" bench/engine_floor.py --sizes "$FLOOR_SIZES" --concurrency 8,N --reps "$REPS" --out "$OUT/engine_floor.json"

step "watch: file save -> applied; docker rm -f -> running again"
"$PY" bench/watch_latency.py -n "$LATENCY_REPS" --out "$OUT/watch_latency.json"
"$PY" bench/repair_latency.py -n "$LATENCY_REPS" --out "$OUT/repair_latency.json"

step "validate of $VALIDATE manifests"
# shellcheck disable=SC2086  # a list of sizes
"$PY" bench/validate_scale.py -n $VALIDATE --out "$OUT/validate_scale.json"

step "a fleet of $ENGINES engines x $CONTAINERS containers"
"$PY" bench/fleet_scale.py --engines "$ENGINES" --containers "$CONTAINERS" --out "$OUT/fleet_scale.json"

uptime >"$OUT/load-after.txt"
step "done: $OUT"
ls -l "$OUT" >&2
