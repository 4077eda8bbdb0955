-- Denied Cloud Foundry container traffic per app (firewall rows the enrichment recognised as
-- the silk iptables-logger's ingress-denied / egress-denied): the app is the destination's for
-- ingress and the source's for egress. Rows whose container had no metadata show with a null
-- app. Optional: report_from, report_until (TIMESTAMPTZ).
SELECT cf_org, cf_space, cf_app, any_value(cf_app_name) AS cf_app_name, cf_event,
       count(*) AS packets_denied,
       count(DISTINCT CASE WHEN cf_event = 'ingress-denied' THEN src_ip ELSE dst_ip END) AS peers,
       min(time) AS first_seen, max(time) AS last_seen
FROM firewall
WHERE cf_event IN ('ingress-denied', 'egress-denied')
  AND time >= coalesce(getvariable('report_from'), TIMESTAMPTZ '-infinity')
  AND time <  coalesce(getvariable('report_until'), TIMESTAMPTZ 'infinity')
GROUP BY ALL
ORDER BY packets_denied DESC, cf_org, cf_space, cf_app, cf_event;
