#!/usr/bin/env bash
# Conversion benchmark (issue 4, "Speed"): a generated day of mixed-vendor logs (conntrack,
# Juniper RT_FLOW and JSERVICES, Cisco ASA, goflow2 JSON, iptables; proportions in
# bench/cgnat/src/mix.rs) written as the relay stores it, normalized by a release build of the
# `normalize` binary (parse + enrich + write Parquet, one worker), then compacted; and DuckDB
# CLI on the same day twice over, with all threads and with `SET threads=1`: the rows already
# split, as JSON lines and CSV (`read_json` / `read_csv` → `COPY … (FORMAT parquet, COMPRESSION
# zstd)`), and the log lines themselves, parsed in SQL (bench/duckdb_parse.sql). A benchmark,
# not a test: it is not part of `cargo test`.
#
#   bench/normalize.sh
#
# Environment (all optional):
#   SUBSCRIBERS, PUBLIC_IPS, SESSIONS_PER_HOUR, HOURS   the generated day (20000, 64, 10, 24)
#   BATCH_AGE=60             seconds of event time per raw object (the relay's batch.max_age);
#                            the day is ~108 events/s, so its objects are far from the relay's
#                            8 MiB: 3600 gives objects closer to what a busy relay fills by size
#   ROW_GROUPS="8192 65536"  also normalize + compact with these row-group sizes and report
#                            speed, bytes and the rows a point lookup must decode
#   SKIP_DUCKDB=1            leave out the DuckDB side
#   SKIP_BUILD=1             use the binaries already built
#   KEEP=1                   keep the work directory
#   PERF=1                   record a CPU profile of the normalize run (perf record -g)
#   STORE_DIR                where the timed stores live (default: the work directory in /tmp).
#                            On ext4 the store's ~38,000 new files per day cost normalize 1-9 s
#                            of system time depending on how many files the file system deleted
#                            lately (its inode allocator skips recently deleted inodes); a tmpfs
#                            such as /dev/shm takes that out (it then holds a copy of the raw
#                            objects, 464 MB for the day, and the lake, per ROW_GROUPS entry)
#   NORMALIZE_BIN            the normalize binary to time (default: the release build's), e.g.
#                            the profile-guided build of bench/pgo.sh
#   CONV_TARGET_DIR          release build dir (default $HOME/.cache/natlake/target-conv; the
#                            normalize binary links no DuckDB, so a release build is quick)
#
# Prints events/s per CPU-second and wall time (normalize as a whole, reading the raw objects
# alone, and parse + enrich + write as the difference), bytes per row per table (after normalize and
# after compaction, with the biggest columns), and the same for DuckDB. Fails when the lake's
# rows differ from the generator's expectation (count or any checked field, the receive time
# included), after normalize or after compaction, or anything is rejected.
set -euo pipefail

SUBSCRIBERS=${SUBSCRIBERS:-20000}
PUBLIC_IPS=${PUBLIC_IPS:-64}
SESSIONS_PER_HOUR=${SESSIONS_PER_HOUR:-10}
HOURS=${HOURS:-24}
START=1793491200 # 2026-11-01T00:00:00Z
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CONV_TARGET_DIR:-$HOME/.cache/natlake/target-conv}
BIN=$CARGO_TARGET_DIR/release
export RUST_LOG=${RUST_LOG:-warn}

W=$(mktemp -d /tmp/natlake-conv-bench.XXXXXX)
# The stores normalize and compact work on (STORE_DIR: e.g. /dev/shm, a tmpfs).
L=$W
if [ -n "${STORE_DIR:-}" ]; then L=$(mktemp -d "$STORE_DIR/natlake-conv-bench.XXXXXX"); fi
cleanup() { if [ "${KEEP:-0}" = 1 ]; then echo "kept $W $L"; else rm -rf "$W" "$L"; fi; }
trap cleanup EXIT
log() { printf '\n== %s\n' "$*"; }

if ! command -v duckdb >/dev/null; then
  python3 -m pip install --quiet duckdb-cli
fi

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "build (release, $CARGO_TARGET_DIR)"
  cd "$ROOT"
  if cargo tree -p natlake-normalize -e normal 2>/dev/null | grep -q duckdb; then
    echo "natlake-normalize links DuckDB: refusing a release build" >&2
    exit 1
  fi
  cargo build --release -p natlake-normalize -p natlake-bench-cgnat -p natlake-compact --bins
fi

log "load: $(uptime)"
log "generate: $SUBSCRIBERS subscribers, $PUBLIC_IPS public addresses, $SESSIONS_PER_HOUR sessions/subscriber/hour, $HOURS h, raw objects of ${BATCH_AGE:-60} s"
mkdir -p "$W/store"
# The log lines as a file only for DuckDB's parsing run (3.3 GB for the full day).
lines=()
if [ "${SKIP_DUCKDB:-0}" != 1 ]; then lines=(--lines "$W/lines.txt"); fi
"$BIN/natlake-bench-cgnat" mix --store "file://$W/store" --json "$W/rows.jsonl" --csv "$W/rows.csv" "${lines[@]}" \
  --subscribers "$SUBSCRIBERS" --public-ips "$PUBLIC_IPS" --sessions-per-hour "$SESSIONS_PER_HOUR" \
  --hours "$HOURS" --start "$START" --batch-age "${BATCH_AGE:-60}" | tee "$W/gen.json"
ROWS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rows"])' "$W/gen.json")
echo "raw objects: $(du -sb "$W/store/raw" | cut -f1) bytes; JSON lines $(stat -c %s "$W/rows.jsonl") bytes; CSV $(stat -c %s "$W/rows.csv") bytes"

# Runs a command under /usr/bin/time; prints "wall user sys maxrss_kb" into $W/$1.time.
timed() {
  local name=$1
  shift
  /usr/bin/time -f '%e %U %S %M' -o "$W/$name.time" "$@"
}
# "<rows> rows: X wall s, Y CPU s -> Z rows per CPU second" from a .time file.
rate() {
  python3 - "$1" "$2" "$3" <<'PY'
import sys
rows, label = int(sys.argv[1]), sys.argv[3]
wall, user, sys_, rss = open(sys.argv[2]).read().split()[-4:]
cpu = float(user) + float(sys_)
print(f"{label}: {rows:,} rows, wall {float(wall):.2f} s, CPU {cpu:.2f} s (user {user}, sys {sys_}), "
      f"peak RSS {int(rss)/1024:.0f} MiB -> {rows/cpu:,.0f} rows per CPU-second, {rows/float(wall):,.0f} rows/s wall")
PY
}

# Bytes per row of each lake table under $1, and the biggest columns of nat_events.
sizes() {
  duckdb -c "
    SELECT split_part(split_part(file_name, '/lake/', 2), '/', 1) AS tbl,
           count(DISTINCT file_name) AS files,
           sum(row_group_num_rows) FILTER (WHERE column_id = 0) AS rows,
           round(sum(total_compressed_size) / sum(row_group_num_rows) FILTER (WHERE column_id = 0), 2) AS column_bytes_per_row
    FROM parquet_metadata('$1/lake/*/*/*/*.parquet') GROUP BY ALL ORDER BY tbl;"
  python3 - "$1" <<'PY'
import os, sys, collections
root = os.path.join(sys.argv[1], "lake")
files, size = collections.Counter(), collections.Counter()
for dirpath, _, names in os.walk(root):
    for n in names:
        if n.endswith(".parquet"):
            t = os.path.relpath(dirpath, root).split(os.sep)[0]
            files[t] += 1
            size[t] += os.path.getsize(os.path.join(dirpath, n))
for t in sorted(size):
    print(f"{t}: {files[t]} objects, {size[t]:,} bytes on disk")
PY
  duckdb -c "
    WITH m AS (SELECT * FROM parquet_metadata('$1/lake/nat_events/*/*/*.parquet')),
    n AS (SELECT sum(row_group_num_rows) AS rows FROM m WHERE column_id = 0)
    SELECT path_in_schema AS nat_events_column, round(sum(total_compressed_size) / any_value(n.rows), 3) AS bytes_per_row,
           string_agg(DISTINCT encodings, ' | ') AS encodings
    FROM m, n GROUP BY ALL ORDER BY bytes_per_row DESC LIMIT 12;"
  duckdb -c "
    SELECT sum(bloom_filter_length) FILTER (WHERE bloom_filter_length > 0) AS bloom_bytes,
           round(sum(bloom_filter_length) / sum(row_group_num_rows) FILTER (WHERE column_id = 0), 3) AS bloom_bytes_per_row
    FROM parquet_metadata('$1/lake/nat_events/*/*/*.parquet');" 2>/dev/null || true
  # Whole objects (footer, page index and bloom filters included) per NAT session event.
  python3 - "$1" <<'PY'
import os, sys, subprocess
root = os.path.join(sys.argv[1], "lake", "nat_events")
size = sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(root) for n in ns if n.endswith(".parquet"))
q = f"SELECT count(*) FILTER (WHERE event IN ('session_create','session_delete')), count(*) FROM read_parquet('{root}/*/*/*.parquet')"
sess, rows = map(int, subprocess.check_output(["duckdb", "-csv", "-noheader", "-c", q], text=True).strip().split(","))
print(f"nat_events: {size / rows:.2f} bytes per row on disk ({rows:,} rows, {sess:,} session create/delete events)")
PY
}

# Compares the lake with the rows the generator expected (joined on provenance).
verify() {
  duckdb -c "
    CREATE TABLE e AS SELECT * FROM read_json('$W/rows.jsonl');
    -- Rows with recv_time as queries/views.sql shows it: stored as recv_delay_us after time
    -- (objects of older versions store recv_time itself).
    CREATE MACRO lake(tbl) AS TABLE
      SELECT * EXCLUDE (recv_time, recv_delay_us), coalesce(recv_time, time + to_microseconds(recv_delay_us)) AS recv_time
      FROM (SELECT * FROM read_parquet('$1/lake/' || tbl || '/*/*/*.parquet', union_by_name = true)
            UNION ALL BY NAME SELECT NULL::TIMESTAMPTZ AS recv_time, NULL::BIGINT AS recv_delay_us WHERE false);
    CREATE TABLE n AS FROM lake('nat_events');
    CREATE TABLE f AS FROM lake('flows');
    CREATE TABLE w AS FROM lake('firewall');
    CREATE TABLE bad AS
    SELECT 'nat_events' AS tbl, count(*) AS rows, count(*) FILTER (WHERE
        n.time IS DISTINCT FROM e.time::TIMESTAMPTZ OR n.event IS DISTINCT FROM e.event
        OR n.protocol IS DISTINCT FROM e.protocol
        OR n.src_ip IS DISTINCT FROM e.src_ip OR n.src_port IS DISTINCT FROM e.src_port
        OR n.x_ip IS DISTINCT FROM e.x_ip OR n.x_port IS DISTINCT FROM e.x_port
        OR n.dst_ip IS DISTINCT FROM e.dst_ip OR n.dst_port IS DISTINCT FROM e.dst_port
        OR n.end_time IS DISTINCT FROM e.end_time::TIMESTAMPTZ
        OR n.bytes_out IS DISTINCT FROM e.bytes_out OR n.bytes_in IS DISTINCT FROM e.bytes_in
        OR n.packets_out IS DISTINCT FROM e.packets_out OR n.packets_in IS DISTINCT FROM e.packets_in
        OR n.recv_time IS DISTINCT FROM e.recv_time::TIMESTAMPTZ
        OR n.device IS DISTINCT FROM e.device OR n.format IS DISTINCT FROM e.format) AS mismatched
      FROM n LEFT JOIN e ON e.tbl = 'nat_events' AND e.raw_key = n.raw_key AND e.raw_record = n.raw_record
    UNION ALL
    SELECT 'flows', count(*), count(*) FILTER (WHERE f.time IS DISTINCT FROM e.time::TIMESTAMPTZ
        OR f.end_time IS DISTINCT FROM e.end_time::TIMESTAMPTZ OR f.src_ip IS DISTINCT FROM e.src_ip
        OR f.post_nat_src_ip IS DISTINCT FROM e.x_ip OR f.post_nat_src_port IS DISTINCT FROM e.x_port
        OR f.bytes IS DISTINCT FROM e.bytes_out OR f.packets IS DISTINCT FROM e.packets_out
        OR f.recv_time IS DISTINCT FROM e.recv_time::TIMESTAMPTZ)
      FROM f LEFT JOIN e ON e.tbl = 'flows' AND e.raw_key = f.raw_key AND e.raw_record = f.raw_record
    UNION ALL
    SELECT 'firewall', count(*), count(*) FILTER (WHERE w.time IS DISTINCT FROM e.time::TIMESTAMPTZ
        OR w.src_ip IS DISTINCT FROM e.src_ip OR w.dst_ip IS DISTINCT FROM e.dst_ip
        OR w.dst_port IS DISTINCT FROM e.dst_port OR w.action <> 'deny'
        OR w.recv_time IS DISTINCT FROM e.recv_time::TIMESTAMPTZ)
      FROM w LEFT JOIN e ON e.tbl = 'firewall' AND e.raw_key = w.raw_key AND e.raw_record = w.raw_record;
    SELECT * FROM bad;
    COPY (SELECT sum(rows), sum(mismatched) FROM bad) TO '$W/verify.csv' (HEADER false);" \
    | sed 's/^/  /'
  read -r got mismatched < <(tr ',' ' ' < "$W/verify.csv")
  if [ "$got" != "$ROWS" ] || [ "$mismatched" != 0 ]; then
    echo "lake rows $got (expected $ROWS), $mismatched mismatched: FAILED" >&2
    exit 1
  fi
  echo "  lake matches the generated rows: $got rows, 0 mismatched"
}

# normalize + compact one copy of the raw objects with a row-group size; $1 = label, $2 = rows
run_lake() {
  local label=$1 rg=$2 store=$L/lake-$1
  rm -rf "$store"
  mkdir -p "$store"
  cp -r "$W/store/raw" "$store/raw"
  sync
  log "normalize ($label: row groups of $rg rows): one worker, release build; load $(uptime | sed 's/.*load average: //')"
  local perf=()
  if [ "${PERF:-0}" = 1 ] && [ "$label" = default ]; then
    perf=(perf record -g -o "$W/perf.data" --)
  fi
  NATLAKE_ROW_GROUP_ROWS=$rg timed "normalize-$label" "${perf[@]}" "${NORMALIZE_BIN:-$BIN/normalize}" --store "file://$store" \
    run --workers 1 --progress-every 0 | tee "$W/normalize-$label.json"
  python3 - "$W/normalize-$label.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["failed"] == 0 and s["rejects"] == 0, f"failed or rejected: {s}"
PY
  rate "$ROWS" "$W/normalize-$label.time" "natlake normalize ($label)"
  if [ "$label" = default ]; then
    # The issue's figure is for parse + enrich + write. Reading the raw objects (listing,
    # fetching, zstd, each record's CRC) is timed alone with the same code and subtracted.
    log "reading alone: the same raw objects listed, fetched, decompressed and checked, nothing else"
    timed read "$BIN/natlake-bench-cgnat" read "file://$store" | tee "$W/read.json"
    rate "$ROWS" "$W/read.time" "reading the raw objects"
    python3 - "$ROWS" "$W/normalize-$label.time" "$W/read.time" <<'PY'
import sys
rows = int(sys.argv[1])
cpu = lambda f: sum(map(float, open(f).read().split()[-4:][1:3]))
n, r = cpu(sys.argv[2]), cpu(sys.argv[3])
print(f"parse + enrich + write (normalize {n:.2f} CPU s - reading {r:.2f}): {n - r:.2f} CPU s "
      f"-> {rows / (n - r):,.0f} rows per CPU-second (derived: two runs subtracted)")
PY
  fi
  [ "$label" = default ] && { log "verify"; verify "$store"; }
  log "stored after normalize ($label)"
  sizes "$store"
  log "compact ($label)"
  NATLAKE_ROW_GROUP_ROWS=$rg timed "compact-$label" "$BIN/compact" --store "file://$store" once \
    --now "$(python3 -c "import sys; print(int(sys.argv[1]) + int(sys.argv[2]) * 3600 + 7200)" "$START" "$HOURS")" >/dev/null
  rate "$ROWS" "$W/compact-$label.time" "compact ($label)"
  [ "$label" = default ] && { log "verify after compaction"; verify "$store"; }
  log "stored after compaction ($label)"
  sizes "$store"
  # A point lookup's work: rows in the row groups whose statistics admit one (x_ip, x_port),
  # averaged over 200 addresses:ports that exist.
  duckdb -c "
    WITH rg AS (SELECT file_name, row_group_id, any_value(row_group_num_rows) AS n,
                       max(stats_min_value) FILTER (WHERE path_in_schema = 'x_ip') AS ip_lo,
                       max(stats_max_value) FILTER (WHERE path_in_schema = 'x_ip') AS ip_hi,
                       max(stats_min_value) FILTER (WHERE path_in_schema = 'x_port') AS p_lo,
                       max(stats_max_value) FILTER (WHERE path_in_schema = 'x_port') AS p_hi
                FROM parquet_metadata('$store/lake/nat_events/*/*/compacted.parquet') GROUP BY ALL),
    q AS (SELECT x_ip, x_port, hour FROM read_parquet('$store/lake/nat_events/*/*/compacted.parquet', hive_partitioning = true)
          USING SAMPLE 200 ROWS)
    SELECT round(avg(rows_read)) AS rows_decoded_per_point_lookup_per_hour, round(avg(groups)) AS row_groups
    FROM (SELECT q.x_ip, q.x_port, q.hour, sum(rg.n) AS rows_read, count(*) AS groups FROM q JOIN rg
          ON rg.file_name LIKE '%hour=' || q.hour || '/%' AND q.x_ip BETWEEN rg.ip_lo AND rg.ip_hi
          AND q.x_port BETWEEN rg.p_lo::INT AND rg.p_hi::INT GROUP BY ALL);"
}

run_lake default 65536
for rg in ${ROW_GROUPS:-}; do run_lake "rg$rg" "$rg"; done

if [ "${SKIP_DUCKDB:-0}" != 1 ]; then
  for threads in 0 1; do
    set_threads=""
    tl="all threads ($(nproc))"
    if [ "$threads" = 1 ]; then set_threads="SET threads=1;"; tl="SET threads=1"; fi
    for src in json csv; do
      if [ $src = json ]; then reader="read_json('$W/rows.jsonl')"; else reader="read_csv('$W/rows.csv')"; fi
      log "DuckDB $(duckdb --version | cut -d' ' -f1): $reader -> Parquet zstd, $tl; load $(uptime | sed 's/.*load average: //')"
      rm -f "$W/duck.parquet"
      timed "duck-$src-$threads" duckdb -c "$set_threads COPY (SELECT * FROM $reader) TO '$W/duck.parquet' (FORMAT parquet, COMPRESSION zstd);"
      rate "$ROWS" "$W/duck-$src-$threads.time" "duckdb $src ($tl)"
      echo "  output $(stat -c %s "$W/duck.parquet") bytes, $(python3 -c "import sys; print(round(int(sys.argv[1]) / int(sys.argv[2]), 2))" "$(stat -c %s "$W/duck.parquet")" "$ROWS") bytes per row (all tables in one file, unsorted)"
    done
    # The same input natlake reads: the log lines themselves, parsed by DuckDB
    # (bench/duckdb_parse.sql), into one unsorted file per table.
    log "DuckDB parses the logs: $(wc -l < "$W/lines.txt") lines, $(stat -c %s "$W/lines.txt") bytes -> Parquet zstd, $tl; load $(uptime | sed 's/.*load average: //')"
    rm -rf "$W/duck-parse" && mkdir -p "$W/duck-parse"
    { echo "$set_threads"; sed -e "s#@LINES@#$W/lines.txt#" -e "s#@OUT@#$W/duck-parse#" "$ROOT/bench/duckdb_parse.sql"; } >"$W/duck-parse.sql"
    timed "duck-parse-$threads" duckdb -bail -f "$W/duck-parse.sql"
    python3 - "$W/gen.json" "$W/duck-parse/counts.csv" <<'PY'
import json, sys
want = json.load(open(sys.argv[1]))["rows_by_table"]
nat, flows, fw, unparsed = map(int, open(sys.argv[2]).read().strip().split(","))
got = {"nat_events": nat, "flows": flows, "firewall": fw}
if got != want or unparsed:
    sys.exit(f"DuckDB parsed {got}, {unparsed} rows without a public address or time; expected {want}")
print(f"  DuckDB parsed every line: {got}")
PY
    rate "$ROWS" "$W/duck-parse-$threads.time" "duckdb parsing the logs ($tl)"
    echo "  output $(du -cb "$W"/duck-parse/*.parquet | tail -1 | cut -f1) bytes in $(ls "$W"/duck-parse/*.parquet | wc -l) files (unsorted)"
  done
fi
log "done; load $(uptime | sed 's/.*load average: //')"
