-- Top inside networks and inside addresses by bytes and by flows.
-- Traffic is every finished flow record (flows) and every closed NAT session that carries
-- counters (nat_events session_delete, e.g. conntrack DESTROY): see the `traffic` view.
-- The inside network is the enrichment's matched prefix where there is one, else the /24 (IPv4)
-- or /64 (IPv6) of the inside address.
-- Optional: SET VARIABLE report_from = TIMESTAMPTZ '2026-11-01 00:00:00+00';
--           SET VARIABLE report_until = TIMESTAMPTZ '2026-11-02 00:00:00+00';
--           SET VARIABLE report_limit = 20;
WITH t AS (
    SELECT * FROM traffic
    WHERE time >= coalesce(getvariable('report_from'), TIMESTAMPTZ '-infinity')
      AND time <  coalesce(getvariable('report_until'), TIMESTAMPTZ 'infinity')
)
SELECT 'network' AS level, inside_network AS inside, count(*) AS flows, sum(bytes) AS bytes,
       sum(packets) AS packets, count(DISTINCT inside_ip) AS inside_ips,
       rank() OVER (ORDER BY sum(bytes) DESC NULLS LAST) AS rank_by_bytes,
       rank() OVER (ORDER BY count(*) DESC) AS rank_by_flows
FROM t GROUP BY inside_network
QUALIFY rank_by_bytes <= coalesce(getvariable('report_limit'), 20)
     OR rank_by_flows <= coalesce(getvariable('report_limit'), 20)
UNION ALL
SELECT 'address', inside_ip, count(*), sum(bytes), sum(packets), 1,
       rank() OVER (ORDER BY sum(bytes) DESC NULLS LAST),
       rank() OVER (ORDER BY count(*) DESC)
FROM t GROUP BY inside_ip
QUALIFY rank() OVER (ORDER BY sum(bytes) DESC NULLS LAST) <= coalesce(getvariable('report_limit'), 20)
     OR rank() OVER (ORDER BY count(*) DESC) <= coalesce(getvariable('report_limit'), 20)
ORDER BY level DESC, rank_by_bytes, rank_by_flows, inside;
