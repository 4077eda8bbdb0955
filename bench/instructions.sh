#!/usr/bin/env bash
# Instructions per row of `normalize run` (and optionally `compact once`), counted by callgrind:
# the way code changes are compared on this shared VM, whose wall and CPU times move with its
# host. Same binary + same input + same environment gives the same count, whatever else runs.
#
#   bench/instructions.sh [NAME]        # NAME labels the output directory (default: the git head)
#
# It generates the conversion benchmark's day (bench/normalize.sh's generator, its defaults) for
# HOURS hours once into $WORK/day, copies the first OBJECTS raw objects (sorted by key) into a
# fresh store, and runs the release `normalize` with one worker under callgrind. Output in
# $WORK/runs/NAME: callgrind.out, the lake it wrote (for `diff -rq` between two builds: the
# files are deterministic) and summary.txt (instructions, rows, instructions per row).
#
# Environment (all optional):
#   HOURS=1 OBJECTS=60      the generated day and the subset taken from it
#   WORK=/tmp/natlake-instructions   kept between runs so the generated day is reused
#   COMPACT=1               also count `compact once` over the subset's lake
#   SKIP_BUILD=1            use the binaries already built
#   CONV_TARGET_DIR         release build dir (default $HOME/.cache/natlake/target-conv)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NAME=${1:-$(git -C "$ROOT" rev-parse --short HEAD)}
HOURS=${HOURS:-1}
OBJECTS=${OBJECTS:-60}
WORK=${WORK:-/tmp/natlake-instructions}
START=1793491200 # 2026-11-01T00:00:00Z, as bench/normalize.sh
export CARGO_TARGET_DIR=${CONV_TARGET_DIR:-$HOME/.cache/natlake/target-conv}
BIN=$CARGO_TARGET_DIR/release
export RUST_LOG=${RUST_LOG:-warn}

command -v valgrind >/dev/null || { echo "valgrind is needed (Debian: valgrind)" >&2; exit 1; }
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  (cd "$ROOT" && cargo build --release -p natlake-normalize -p natlake-bench-cgnat -p natlake-compact --bins)
fi

day=$WORK/day-$HOURS
if [ ! -f "$day/gen.json" ]; then
  rm -rf "$day" && mkdir -p "$day/store"
  "$BIN/natlake-bench-cgnat" mix --store "file://$day/store" --json /dev/null --csv /dev/null \
    --hours "$HOURS" --start "$START" >"$day/gen.json.tmp"
  mv "$day/gen.json.tmp" "$day/gen.json"
fi

out=$WORK/runs/$NAME
rm -rf "$out" && mkdir -p "$out/store"
# OBJECTS raw objects spread evenly over the day's sorted keys (every device's kind, every
# part of the hour), with their folders.
(cd "$day/store" && find raw -type f | LC_ALL=C sort \
  | awk -v n="$OBJECTS" '{ k[NR] = $0 } END { for (i = 0; i < n && i < NR; i++) print k[int(i * NR / n) + 1] }' \
  | xargs cp --parents -t "$out/store")

count() { # $1 = valgrind's log; prints the instructions of the last run it logged
  awk '/Collected :/ { n = $NF } END { print n }' "$1"
}

valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" \
  "$BIN/normalize" --store "file://$out/store" run --workers 1 --progress-every 0 >"$out/normalize.json" 2>"$out/valgrind.log"
rows=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["failed"] == 0, s; print(s["events"])' "$out/normalize.json")
ir=$(count "$out/valgrind.log")
{
  echo "normalize: $ir instructions, $rows rows, $((ir / rows)) per row ($OBJECTS objects of a $HOURS-hour day)"
  if [ "${COMPACT:-0}" = 1 ]; then
    valgrind --tool=callgrind --callgrind-out-file="$out/compact.callgrind.out" \
      "$BIN/compact" --store "file://$out/store" once --now $((START + HOURS * 3600 + 7200)) >/dev/null 2>>"$out/valgrind.log"
    cir=$(count "$out/valgrind.log")
    echo "compact: $cir instructions, $((cir / rows)) per row"
  fi
} | tee "$out/summary.txt"
