#!/usr/bin/env bash
# edge-relay vs rsyslog: UDP syslog on loopback, same load, same figures (issue 3, "Speed and
# memory"). A benchmark, not a test: it is not part of `cargo test`.
#
#   bench/relay.sh [RATE [DURATION]]        # default 200000 lines/s for 60 s
#
# Environment (all optional):
#   RATE, DURATION          as the arguments (lines/s, seconds)
#   CARGO_TARGET_DIR        default $HOME/.cache/natlake/target-relay
#   RELAY_PORT, RSYSLOG_PORT, SINK_PORT  loopback UDP ports (default 15514, 15515, 15516)
#   RCVBUF_MIB              socket receive buffer of both receivers, MiB (default 8, the relay's default)
#   RELAY_ARGS              extra edge-relay flags (e.g. "--config my.toml")
#   RSYSLOG_ZIP_LEVEL       omfile zipLevel (default 1: the fastest, like the relay's zstd level 1)
#   SEND_BATCH              datagrams per sendmmsg (default 32)
#   DRAIN                   seconds to wait after the load before stopping a receiver (default 3)
#   SKIP_RSYSLOG=1          edge-relay only;  SKIP_RELAY=1  rsyslog only
#   SKIP_SINK=1             leave out the kernel floor (`natlake-bench-loadgen sink`: receives
#                           with recvmmsg like the relay and discards; what the kernel alone costs)
#   SKIP_BUILD=1            use the binaries already in $CARGO_TARGET_DIR/release
#   RELAY_BIN               another edge-relay binary to measure (e.g. an older build)
#   KEEP=1                  keep the temp dir (stores, logs, configs)
#
# Per receiver it reports: lines sent, lines received (decoded from what it wrote: the relay's raw
# objects with natlake-raw, rsyslog's gzip file), lost and duplicated lines, accepted lines/s,
# CPU time per received line (user+sys: from wait4's rusage for the whole process life, start and
# graceful stop included; and from /proc/<pid>/stat between the start of the load and the end of
# the drain), peak RSS (VmHWM from /proc/<pid>/status before the stop, and ru_maxrss at exit) and
# the kernel's receive-buffer drops for the socket (/proc/net/udp).
set -euo pipefail

RATE=${1:-${RATE:-200000}}
DURATION=${2:-${DURATION:-60}}
RELAY_PORT=${RELAY_PORT:-15514}
RSYSLOG_PORT=${RSYSLOG_PORT:-15515}
SINK_PORT=${SINK_PORT:-15516}
RCVBUF_MIB=${RCVBUF_MIB:-8}
RSYSLOG_ZIP_LEVEL=${RSYSLOG_ZIP_LEVEL:-1}
SEND_BATCH=${SEND_BATCH:-32}
DRAIN=${DRAIN:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/natlake/target-relay}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$CARGO_TARGET_DIR/release
LOADGEN=$BIN/natlake-bench-loadgen
RELAY=${RELAY_BIN:-$BIN/edge-relay}
TICK=$(getconf CLK_TCK)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/natlake-relay-bench.XXXXXX")
chmod 0755 "$WORK"
PIDS=()

cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    sleep 0.5
    for p in "${PIDS[@]}"; do
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [[ ${KEEP:-0} == 1 ]]; then
        echo "kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
# key=value file lookup
kv() { sed -n "s/^$2=//p" "$1" | head -n1; }

# utime+stime of a process in clock ticks (fields 14, 15 of /proc/PID/stat, after the comm).
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# "thread-name ticks" for every thread of a process (spaces in names become "_").
thread_ticks() {
    local t
    for t in /proc/"$1"/task/*; do
        awk '{ n = $0; sub(/^[^(]*\(/, "", n); sub(/\) [A-Za-z] -?[0-9].*$/, "", n); gsub(/ /, "_", n);
               s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print n, f[12] + f[13] }' "$t/stat" 2>/dev/null || true
    done
}
vm_hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
# Kernel receive-buffer drops of the UDP socket bound to 127.0.0.1:PORT (last column).
udp_drops() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p="0100007F:$hex" '$2 == p { d += $NF } END { print d + 0 }' /proc/net/udp
}
udp_bound() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p="0100007F:$hex" '$2 == p { f = 1 } END { exit !f }' /proc/net/udp
}

wait_bound() { # PORT WRAPPER_PID NAME
    local i
    for i in $(seq 1 100); do
        udp_bound "$1" && return 0
        kill -0 "$2" 2>/dev/null || die "$3 exited at start (see its log)"
        sleep 0.1
    done
    die "$3 did not bind 127.0.0.1:$1"
}

port_free() { ! udp_bound "$1" || die "127.0.0.1:$1 is in use (set RELAY_PORT / RSYSLOG_PORT)"; }

# --- build ---------------------------------------------------------------------------------------
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building edge-relay and natlake-bench-loadgen (release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$ROOT" && cargo build --release -q -p edge-relay -p natlake-bench-loadgen)
fi
[[ -x $RELAY && -x $LOADGEN ]] || die "missing binaries in $BIN"

if [[ ${SKIP_RSYSLOG:-0} != 1 ]] && ! command -v rsyslogd >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        log "installing rsyslog (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q rsyslog >"$WORK/apt.log" 2>&1 ||
            die "apt-get install rsyslog failed (see $WORK/apt.log; KEEP=1)"
        # The package may start the system service: this benchmark runs its own instance only.
        if command -v systemctl >/dev/null; then systemctl stop rsyslog 2>/dev/null || true; fi
    else
        die "rsyslogd not found: apt-get install rsyslog (or SKIP_RSYSLOG=1)"
    fi
fi

EXPECT=$(awk -v r="$RATE" -v d="$DURATION" 'BEGIN { printf "%d", r * d + 0.5 }')
log "load: $RATE lines/s for $DURATION s = $EXPECT lines; $(nproc) CPUs; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# run_one NAME PORT START_FUNCTION COUNT_FUNCTION
# Starts the receiver under `loadgen run` (rusage at exit), drives the load, drains, stops it with
# SIGTERM and counts what it wrote. Results in $WORK/NAME.result.
run_one() {
    local name=$1 port=$2 start=$3 countf=$4 d=$WORK/$1
    mkdir -p "$d"
    port_free "$port"
    "$start" "$d" "$port" &
    local wrapper=$!
    PIDS+=("$wrapper")
    for _ in $(seq 1 50); do [[ -s $d/pid ]] && break; sleep 0.1; done
    [[ -s $d/pid ]] || die "$name did not start"
    local pid
    pid=$(cat "$d/pid")
    PIDS+=("$pid")
    wait_bound "$port" "$wrapper" "$name"
    sleep 1
    local t0 t1 hwm drops
    t0=$(cpu_ticks "$pid")
    thread_ticks "$pid" >"$d/threads0"
    log "$name (pid $pid) on 127.0.0.1:$port: sending"
    "$LOADGEN" run --pid-file "$d/sender.pid" --report "$d/sender.rusage" -- \
        "$LOADGEN" send --to "127.0.0.1:$port" --rate "$RATE" --duration "$DURATION" \
        --batch "$SEND_BATCH" >"$d/sent"
    sleep "$DRAIN"
    kill -0 "$pid" 2>/dev/null || die "$name died during the load (see $d)"
    t1=$(cpu_ticks "$pid")
    thread_ticks "$pid" >"$d/threads1"
    hwm=$(vm_hwm_kib "$pid")
    drops=$(udp_drops "$port")
    log "$name: stopping (SIGTERM)"
    local t_stop=$SECONDS
    kill -TERM "$pid"
    wait "$wrapper" || true
    local stop_s=$((SECONDS - t_stop))
    [[ -s $d/rusage ]] || die "$name: no rusage report"
    "$countf" "$d" >"$d/count" || die "$name: counting failed"
    local sent received user sys maxrss secs
    sent=$(kv "$d/sent" sent)
    received=$(kv "$d/count" received)
    user=$(kv "$d/rusage" user_us)
    sys=$(kv "$d/rusage" sys_us)
    maxrss=$(kv "$d/rusage" maxrss_kib)
    secs=$(kv "$d/sent" seconds)
    awk -v name="$name" -v sent="$sent" -v rec="$received" -v secs="$secs" \
        -v lost="$(kv "$d/count" lost)" -v dup="$(kv "$d/count" duplicates)" \
        -v senderr="$(kv "$d/sent" send_errors)" -v avg="$(kv "$d/sent" avg_line_bytes)" \
        -v user="$user" -v sys="$sys" -v t0="$t0" -v t1="$t1" -v tick="$TICK" \
        -v hwm="$hwm" -v maxrss="$maxrss" -v drops="$drops" -v stop_s="$stop_s" \
        -v idrops="$(cat "$d/internal_drops" 2>/dev/null || echo n/a)" \
        -v out_bytes="$(cat "$d/out_bytes" 2>/dev/null || echo 0)" \
        -v suser="$(kv "$d/sender.rusage" user_us)" -v ssys="$(kv "$d/sender.rusage" sys_us)" \
        'BEGIN {
            n = rec > 0 ? rec : 1
            printf "name=%s\nsent=%d\nsend_errors=%d\navg_line_bytes=%s\nsend_seconds=%.2f\n", name, sent, senderr, avg, secs
            printf "received=%d\nlost=%d\nlost_pct=%.4f\nduplicates=%d\nkernel_drops=%d\nreceiver_drops=%s\n", rec, lost, 100 * lost / sent, dup, drops, idrops
            printf "accepted_lines_per_s=%.0f\n", rec / secs
            printf "cpu_total_s=%.2f\ncpu_us_per_line=%.3f\n", (user + sys) / 1e6, (user + sys) / n
            printf "cpu_user_us_per_line=%.3f\ncpu_sys_us_per_line=%.3f\n", user / n, sys / n
            printf "cpu_load_us_per_line=%.3f\n", (t1 - t0) / tick * 1e6 / n
            printf "peak_rss_mib=%.1f\nmaxrss_exit_mib=%.1f\nstop_seconds=%d\noutput_bytes=%d\n", hwm / 1024, maxrss / 1024, stop_s, out_bytes
            printf "sender_cpu_us_per_line=%.3f\n", (suser + ssys) / sent
        }' >"$d/result"
    # CPU per line by thread name during the load (threads of the same name summed).
    awk -v tick="$TICK" -v n="$received" '
        FNR == NR { a[$1] += $2; next }
        { b[$1] += $2 }
        END { for (k in b) if (b[k] - a[k] > 0) printf "threads_us_per_line.%s=%.3f\n", k, (b[k] - a[k]) / tick * 1e6 / (n > 0 ? n : 1) }
    ' "$d/threads0" "$d/threads1" | sort >>"$d/result"
    log "$name: received $received of $sent"
}

# --- edge-relay ----------------------------------------------------------------------------------
start_relay() { # DIR PORT
    mkdir -p "$1/store" "$1/spool"
    # shellcheck disable=SC2086
    exec "$LOADGEN" run --pid-file "$1/pid" --report "$1/rusage" -- \
        "$RELAY" --store "file://$1/store" --spool "$1/spool" --relay-id bench \
        --syslog-udp "127.0.0.1:$2" --udp-receive-buffer "${RCVBUF_MIB}MiB" ${RELAY_ARGS:-} \
        2>"$1/relay.log"
}
count_relay() {
    local left
    left=$(find "$1/spool" -type f -name '*.nlraw.zst' | wc -l)
    [[ $left == 0 ]] || log "edge-relay: $left batch(es) left in the spool (not counted)"
    du -sb "$1/store" | cut -f1 >"$1/out_bytes"
    # The relay's own drop counter (queue_full etc.), from its last log line.
    sed 's/\x1b\[[0-9;]*m//g' "$1/relay.log" | sed -n 's/.* stopped .*dropped=\([0-9]*\).*/\1/p' | tail -n1 >"$1/internal_drops"
    "$LOADGEN" count --expect "$EXPECT" --raw "$1/store"
}

# --- rsyslog -------------------------------------------------------------------------------------
start_rsyslog() { # DIR PORT
    local d=$1
    mkdir -p "$d/work" "$d/out"
    local priv=""
    if [[ $(id -u) == 0 ]] && id nobody >/dev/null 2>&1; then
        # Binds (and sizes its buffer) as root like the relay, then runs as nobody.
        chown nobody "$d/work" "$d/out"
        priv='$PrivDropToUser nobody'
    fi
    cat >"$d/rsyslog.conf" <<EOF
# Benchmark instance: no system logging (no imuxsock / imklog), its own work directory.
global(workDirectory="$d/work" maxMessageSize="8k")
$priv
module(load="imudp" threads="1")
template(name="raw" type="string" string="%rawmsg%\n")
ruleset(name="bench") {
    action(type="omfile" file="$d/out/bench.log.gz" template="raw"
           zipLevel="$RSYSLOG_ZIP_LEVEL" ioBufferSize="256k" flushOnTXEnd="off")
}
input(type="imudp" address="127.0.0.1" port="$2" rcvbufSize="${RCVBUF_MIB}m" ruleset="bench")
EOF
    exec "$LOADGEN" run --pid-file "$d/pid" --report "$d/rusage" -- \
        rsyslogd -n -iNONE -f "$d/rsyslog.conf" 2>"$d/rsyslog.log" >&2
}
count_rsyslog() {
    du -sb "$1/out" | cut -f1 >"$1/out_bytes"
    [[ -s $1/out/bench.log.gz ]] || die "rsyslog wrote nothing (see $1/rsyslog.log)"
    gzip -dc "$1/out/bench.log.gz" | "$LOADGEN" count --expect "$EXPECT" --lines -
}

# --- kernel floor --------------------------------------------------------------------------------
start_sink() { # DIR PORT
    exec "$LOADGEN" run --pid-file "$1/pid" --report "$1/rusage" -- \
        "$LOADGEN" sink --listen "127.0.0.1:$2" --report "$1/sink" --rcvbuf $((RCVBUF_MIB << 20))
}
count_sink() {
    local got
    got=$(kv "$1/sink" received)
    printf 'received=%d\nlost=%d\nduplicates=0\n' "$got" $((EXPECT - got))
}

[[ ${SKIP_SINK:-0} == 1 ]] || run_one kernel-floor "$SINK_PORT" start_sink count_sink
[[ ${SKIP_RELAY:-0} == 1 ]] || run_one edge-relay "$RELAY_PORT" start_relay count_relay
[[ ${SKIP_RSYSLOG:-0} == 1 ]] || run_one rsyslog "$RSYSLOG_PORT" start_rsyslog count_rsyslog

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report --------------------------------------------------------------------------------------
results=()
for n in kernel-floor edge-relay rsyslog; do [[ -s $WORK/$n/result ]] && results+=("$WORK/$n/result"); done
echo
echo "rate=$RATE lines/s  duration=${DURATION}s  lines=$EXPECT  cpus=$(nproc)  load average before: $LOAD_BEFORE  after: $LOAD_AFTER"
echo "edge-relay: $("$RELAY" --version 2>/dev/null || echo '?')  rsyslog: $(rsyslogd -v 2>/dev/null | head -n1 | awk '{print $2}')  zipLevel=$RSYSLOG_ZIP_LEVEL  rcvbuf=${RCVBUF_MIB}MiB"
awk -F= '
    FNR == 1 { col++ }
    { if (!($1 in row)) { keys[++nk] = $1 } row[$1] = 1; v[$1, col] = $2 }
    END {
        for (k = 1; k <= nk; k++) {
            line = sprintf("%-38s", keys[k])
            for (c = 1; c <= col; c++) line = line sprintf(" %16s", v[keys[k], c])
            print line
        }
    }' "${results[@]}"
