#!/usr/bin/env python3
"""Information content of the conversion benchmark's NAT events (issue 4, "≤ 6 bytes per CGNAT
session event").

A lower bound on the bytes per `nat_events` row that *any* lossless encoding of
bench/normalize.sh's generated day needs: the entropy of the fields that tell one session from
another, from the distributions bench/cgnat/src/mix.rs draws them from (mirrored below; change
both together). It grants an ideal coder everything Parquet cannot do: a session's create and
delete rows share one copy of every field, the close time is coded as the duration, and the
public port as its place among the ports used in the hour. It leaves out what the lake stores
besides (receive time, device, format, provenance, counters), so the real need is higher.

    python3 bench/nat_entropy.py [SUBSCRIBERS] [PUBLIC_IPS] [SESSIONS_PER_HOUR]
"""
import sys
from math import lgamma, log, log2

SUBSCRIBERS = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
PUBLIC_IPS = int(sys.argv[2]) if len(sys.argv) > 2 else 64
SESSIONS_PER_HOUR = float(sys.argv[3]) if len(sys.argv) > 3 else 10

HOUR_US = 3600e6
# mix.rs `duration`: (probability, from s, to s), uniform within each part.
DURATIONS = [(0.5, 0.05, 10.0), (0.4, 10.0, 300.0), (0.1, 300.0, 10800.0)]
# mix.rs: the destination is one of 2,000 popular addresses with p = 0.7, else uniform in
# 1.0.0.0–222.255.255.255.
POPULAR, P_POPULAR, RANDOM_SPACE = 2000, 0.7, 0xDF000000 - 0x01000000
# mix.rs: (proto, dport) 443/tcp .62, 80/tcp .10, 53/udp .15, 123/udp .03, 443/udp .05, else a
# random tcp port in 1024–65535.
PROTO_DPORT = [0.62, 0.10, 0.15, 0.03, 0.05]
PORTS = 65535 - 1024 + 1  # inside and public ports are uniform in 1024–65535
# Device::SHARES (of 20) and precision(); rows per session in nat_events; whether the device
# logs the destination. iptables (1/20) writes no nat_events rows.
DEVICES = [
    ("conntrack", 8, 1, 2, True),
    ("srx", 5, 1_000, 2, True),
    ("jservices", 2, 1_000_000, 2, True),
    ("asa", 2, 1_000_000, 2, False),
    ("goflow2", 2, 1, 1, True),
]


def mixture(parts):
    """Entropy of a mixture of disjoint parts given as (probability, bits within the part)."""
    return sum(p * h for p, h in parts) - sum(p * log2(p) for p, _ in parts)


def session_bits(precision_us, has_dst):
    create = log2(HOUR_US / precision_us)
    duration = mixture(
        [(p, log2(max((b - a) * 1e6 / precision_us, 1.0))) for p, a, b in DURATIONS]
    )
    inside_ip = log2(SUBSCRIBERS / PUBLIC_IPS)  # a subscriber maps to one public address
    dst = mixture([(P_POPULAR, log2(POPULAR)), (1 - P_POPULAR, log2(RANDOM_SPACE))])
    rest = 1 - sum(PROTO_DPORT)
    proto_dport = mixture([(p, 0.0) for p in PROTO_DPORT] + [(rest, log2(PORTS))])
    # The hour's public ports of one address and protocol as a set: log2 C(n, k) / k each.
    k = SUBSCRIBERS * SESSIONS_PER_HOUR / PUBLIC_IPS / 2
    public_port = (lgamma(PORTS + 1) - lgamma(k + 1) - lgamma(PORTS - k + 1)) / log(2) / k
    fields = {
        "create time": create,
        "duration": duration,
        "inside port": log2(PORTS),
        "inside address": inside_ip,
        "destination": dst if has_dst else 0.0,
        "protocol+dport": proto_dport,
        "public port": public_port,
    }
    return fields


total_bits = total_rows = 0.0
for name, share, precision, rows, has_dst in DEVICES:
    f = session_bits(precision, has_dst)
    bits = sum(f.values())
    print(
        f"{name:10} precision {precision:>9} µs: "
        + ", ".join(f"{k} {v:.1f}" for k, v in f.items())
        + f" = {bits:.1f} bits per session, {bits / 8 / rows:.2f} B per row"
    )
    total_bits += share * bits
    total_rows += share * rows
print(
    f"the day's mix: {total_bits / total_rows / 8:.2f} bytes per nat_events row at the least "
    "(no receive time, device, counters or provenance)"
)
