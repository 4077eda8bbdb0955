-- 1-minute and 5-minute aggregates: flows / sessions, bytes, packets, distinct inside and
-- public addresses, NAT events by kind. `report_bucket` picks the width (default 1 minute):
--   SET VARIABLE report_bucket = INTERVAL 5 MINUTE;
-- Optional: report_from, report_until (TIMESTAMPTZ). Buckets and hours are UTC.
WITH bounds AS (
    SELECT coalesce(getvariable('report_bucket'), INTERVAL 1 MINUTE) AS width,
           coalesce(getvariable('report_from'), TIMESTAMPTZ '-infinity') AS since,
           coalesce(getvariable('report_until'), TIMESTAMPTZ 'infinity') AS until
),
tr AS (
    SELECT time_bucket(width, time::TIMESTAMP) AS bucket, count(*) AS flows, sum(bytes) AS bytes,
           sum(packets) AS packets, count(DISTINCT inside_ip) AS inside_ips
    FROM traffic, bounds WHERE time >= since AND time < until GROUP BY ALL
),
ne AS (
    SELECT time_bucket(width, time::TIMESTAMP) AS bucket,
           count(*) FILTER (WHERE event = 'session_create') AS sessions_created,
           count(*) FILTER (WHERE event = 'session_delete') AS sessions_deleted,
           count(*) FILTER (WHERE event = 'port_block_alloc') AS port_blocks_allocated,
           count(*) FILTER (WHERE event = 'port_block_release') AS port_blocks_released,
           count(DISTINCT x_ip) AS public_ips
    FROM nat_events, bounds WHERE time >= since AND time < until GROUP BY ALL
)
SELECT bucket, coalesce(tr.flows, 0) AS flows, coalesce(tr.bytes, 0) AS bytes,
       coalesce(tr.packets, 0) AS packets, coalesce(tr.inside_ips, 0) AS inside_ips,
       coalesce(ne.sessions_created, 0) AS sessions_created,
       coalesce(ne.sessions_deleted, 0) AS sessions_deleted,
       coalesce(ne.port_blocks_allocated, 0) AS port_blocks_allocated,
       coalesce(ne.port_blocks_released, 0) AS port_blocks_released,
       coalesce(ne.public_ips, 0) AS public_ips
FROM tr FULL OUTER JOIN ne USING (bucket)
ORDER BY bucket;
