#!/usr/bin/env bash
# Normalize builds compared by CPU time, interleaved: each round runs every binary once, in
# turn, on a fresh copy of the same generated day (bench/normalize.sh's generator and defaults),
# so a host whose speed drifts within the hour (this VM's moves by 10–25 %) slows all of them
# alike. Then checks that every binary wrote the same lake, byte for byte.
#
#   bench/interleave.sh BIN [BIN...]     # e.g. an old and a new build of `normalize`
#
# Environment (all optional):
#   ROUNDS=2                 runs per binary
#   SUBSCRIBERS, PUBLIC_IPS, SESSIONS_PER_HOUR, HOURS, BATCH_AGE   the day (as bench/normalize.sh)
#   STORE_DIR=/dev/shm       where the day and the timed stores live: a tmpfs (on ext4 the
#                            store's file creations cost 1–9 s of system time, see bench/README.md)
#   KEEP_DAY=1               keep the generated day for the next call (it is reused when kept)
#   READ=1                   also time reading the raw objects alone once per round
#                            (`natlake-bench-cgnat read`) and print each binary's median less
#                            the median read: parse + enrich + write, as bench/normalize.sh does
#   CONV_TARGET_DIR          release build dir with the generator (default
#                            $HOME/.cache/natlake/target-conv; built when missing)
#
# Prints each run (CPU seconds, user and system, rows per CPU-second) and each binary's median.
# Fails when a run fails or the lakes differ.
set -euo pipefail

[ $# -ge 1 ] || { sed -n '2,8p' "$0"; exit 2; }
for b in "$@"; do [ -x "$b" ] || { echo "not an executable: $b" >&2; exit 2; }; done

ROUNDS=${ROUNDS:-2}
SUBSCRIBERS=${SUBSCRIBERS:-20000}
PUBLIC_IPS=${PUBLIC_IPS:-64}
SESSIONS_PER_HOUR=${SESSIONS_PER_HOUR:-10}
HOURS=${HOURS:-24}
START=1793491200 # 2026-11-01T00:00:00Z, as bench/normalize.sh
STORE_DIR=${STORE_DIR:-/dev/shm}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CONV_TARGET_DIR:-$HOME/.cache/natlake/target-conv}
export RUST_LOG=${RUST_LOG:-warn}

GEN=$CARGO_TARGET_DIR/release/natlake-bench-cgnat
if [ ! -x "$GEN" ]; then
  (cd "$ROOT" && cargo build --release -p natlake-bench-cgnat)
fi

DAY=$STORE_DIR/natlake-interleave-day-$SUBSCRIBERS-$PUBLIC_IPS-$SESSIONS_PER_HOUR-$HOURS-${BATCH_AGE:-60}
W=$(mktemp -d "$STORE_DIR/natlake-interleave.XXXXXX")
cleanup() {
  rm -rf "$W"
  if [ "${KEEP_DAY:-0}" != 1 ]; then rm -rf "$DAY"; fi
}
trap cleanup EXIT

if [ ! -f "$DAY/gen.json" ]; then
  rm -rf "$DAY" && mkdir -p "$DAY/store"
  "$GEN" mix --store "file://$DAY/store" --json /dev/null --csv /dev/null \
    --subscribers "$SUBSCRIBERS" --public-ips "$PUBLIC_IPS" --sessions-per-hour "$SESSIONS_PER_HOUR" \
    --hours "$HOURS" --start "$START" --batch-age "${BATCH_AGE:-60}" > "$DAY/gen.json.part"
  mv "$DAY/gen.json.part" "$DAY/gen.json"
fi
ROWS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rows"])' "$DAY/gen.json")
echo "day: $ROWS rows in $(find "$DAY/store/raw" -type f | wc -l) raw objects; $# binaries, $ROUNDS rounds; load $(uptime | sed 's/.*load average: //')"

for round in $(seq 1 "$ROUNDS"); do
  i=0
  for bin in "$@"; do
    i=$((i + 1))
    store=$W/store
    rm -rf "$store" && mkdir -p "$store"
    cp -r "$DAY/store/raw" "$store/raw"
    /usr/bin/time -f '%U %S %M' -o "$W/time" "$bin" --store "file://$store" \
      run --workers 1 --progress-every 0 > "$W/summary.json"
    python3 - "$W/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["failed"] == 0, f"failed: {s}"
PY
    read -r user sys_ rss < "$W/time"
    python3 -c "
import sys
rows, user, sys_, rss = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
print(f'round {sys.argv[5]} bin {sys.argv[6]}: CPU {user + sys_:.2f} s (user {user:.2f}, sys {sys_:.2f}), {rows / (user + sys_):,.0f} rows per CPU-second, peak RSS {rss // 1024} MiB  {sys.argv[7]}')
" "$ROWS" "$user" "$sys_" "$rss" "$round" "$i" "$bin" | tee -a "$W/runs.txt"
    if [ "$round" = 1 ]; then
      rm -rf "$W/lake-$i" && mv "$store/lake" "$W/lake-$i"
    fi
  done
  if [ "${READ:-0}" = 1 ]; then
    /usr/bin/time -f '%U %S' -o "$W/time" "$GEN" read "file://$DAY/store" > /dev/null
    read -r user sys_ < "$W/time"
    echo "round $round read: CPU $(python3 -c "import sys; print(f'{float(sys.argv[1]) + float(sys.argv[2]):.2f}')" "$user" "$sys_") s (user $user, sys $sys_)" | tee -a "$W/reads.txt"
  fi
done

echo "median CPU seconds per binary:"
python3 - "$W/runs.txt" "$ROWS" "$W/reads.txt" <<'PY'
import os, re, statistics, sys
rows = int(sys.argv[2])
cpu = {}
for line in open(sys.argv[1]):
    m = re.match(r"round \d+ bin (\d+): CPU ([\d.]+) s .*  (\S+)$", line.strip())
    cpu.setdefault((int(m.group(1)), m.group(3)), []).append(float(m.group(2)))
reads = []
if os.path.exists(sys.argv[3]):
    reads = [float(re.search(r"CPU ([\d.]+) s", l).group(1)) for l in open(sys.argv[3])]
read = statistics.median(reads) if reads else None
for (i, b), v in sorted(cpu.items()):
    med = statistics.median(v)
    extra = ""
    if read is not None:
        extra = f"; less reading ({read:.2f} s): {rows / (med - read):,.0f} parse + enrich + write"
    print(f"  bin {i}: {med:.2f} s, {rows / med:,.0f} rows per CPU-second{extra}  {b}")
PY

for i in $(seq 2 $#); do
  if ! diff -rq "$W/lake-1" "$W/lake-$i" > "$W/diff.txt"; then
    echo "the lakes of bin 1 and bin $i differ:" >&2
    head -20 "$W/diff.txt" >&2
    exit 1
  fi
done
[ $# -gt 1 ] && echo "lakes byte-identical across the $# binaries"
exit 0
