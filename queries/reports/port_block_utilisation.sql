-- Port utilisation per public address: how many of its ports were held at the busiest moment,
-- per hour, by port blocks (port_block_alloc … release) and by single-port sessions
-- (session_create … delete). 64,512 = ports 1024–65535, the usual CGN pool per address and
-- protocol (port blocks often hold every protocol: their protocol is null). Mappings open before the first event read are not seen: read whole days, or add the
-- carry (queries/carry.sql).
-- Optional: report_from, report_until (TIMESTAMPTZ). Buckets and hours are UTC.
WITH ev AS (
    SELECT x_ip, protocol, time, raw_key, raw_record,
           CASE WHEN event IN ('port_block_alloc', 'session_create') THEN 1 ELSE -1 END
             * (coalesce(x_port_end, x_port) - x_port + 1) AS delta,
           event IN ('port_block_alloc', 'port_block_release') AS is_block,
           src_ip
    FROM nat_events
    WHERE event IN ('port_block_alloc', 'port_block_release', 'session_create', 'session_delete')
      AND x_port IS NOT NULL
      AND time >= coalesce(getvariable('report_from'), TIMESTAMPTZ '-infinity')
      AND time <  coalesce(getvariable('report_until'), TIMESTAMPTZ 'infinity')
),
held AS (
    SELECT *, sum(delta) OVER (PARTITION BY x_ip, is_block, protocol ORDER BY time, delta DESC, raw_key, raw_record
                               ROWS UNBOUNDED PRECEDING) AS ports_held
    FROM ev
)
SELECT x_ip AS public_ip, protocol, date_trunc('hour', time::TIMESTAMP) AS hour,
       CASE WHEN is_block THEN 'port_block' ELSE 'session' END AS kind,
       count(*) FILTER (WHERE delta > 0) AS allocations,
       count(DISTINCT src_ip) AS inside_ips,
       max(ports_held) AS peak_ports_held,
       round(100.0 * max(ports_held) / 64512, 2) AS peak_utilisation_pct
FROM held GROUP BY ALL
ORDER BY peak_utilisation_pct DESC, public_ip, protocol, hour, kind;
