-- Destination ASNs by bytes and flows, per inside network and per inside address (the
-- `traffic` view: ASN and AS organisation from the MMDB enrichment, null where none matched —
-- kept as its own row so unenriched traffic is visible, not dropped).
-- `report_level` picks 'network' (default) or 'address'; `report_limit` ASNs per inside
-- network/address (default 10). Optional: report_from, report_until (TIMESTAMPTZ).
WITH t AS (
    SELECT CASE WHEN coalesce(getvariable('report_level'), 'network') = 'address'
                THEN inside_ip ELSE inside_network END AS inside,
           dst_asn, dst_as_org, bytes
    FROM traffic
    WHERE time >= coalesce(getvariable('report_from'), TIMESTAMPTZ '-infinity')
      AND time <  coalesce(getvariable('report_until'), TIMESTAMPTZ 'infinity')
)
SELECT inside, dst_asn, any_value(dst_as_org) AS dst_as_org, count(*) AS flows,
       sum(bytes) AS bytes,
       rank() OVER (PARTITION BY inside ORDER BY sum(bytes) DESC NULLS LAST, count(*) DESC) AS rank
FROM t GROUP BY inside, dst_asn
QUALIFY rank <= coalesce(getvariable('report_limit'), 10)
ORDER BY inside, rank, dst_asn;
