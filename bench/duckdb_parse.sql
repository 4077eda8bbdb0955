-- DuckDB doing natlake's job on the same input (bench/normalize.sh, "DuckDB parses the logs"):
-- the raw payloads the generator wrote into the raw objects, one per line (`mix --lines`),
-- parsed with regular expressions and JSON functions into typed NAT, flow and firewall rows,
-- written as zstd Parquet. The patterns know the generator's field order, which a real
-- deployment could not rely on: DuckDB's figure is an upper bound for this approach.
-- Rows are not sorted, partitioned or enriched, and BSD stamps get the generator's year.
-- @LINES@ and @OUT@ are substituted by the script.

CREATE TEMP TABLE l AS
SELECT line FROM read_csv('@LINES@', columns = {'line': 'VARCHAR'}, delim = E'\x01', quote = '',
    escape = '', header = false, auto_detect = false);

CREATE TEMP TABLE nat AS
WITH ct AS (
    SELECT regexp_extract(line,
        '^\[(\d+\.\d+)\]\s+\[(NEW|DESTROY)\] ipv4\s+\d+ \w+\s+(\d+) (?:\d+ )?(?:[A-Z_]+ )?src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+) (?:packets=(\d+) bytes=(\d+) )?(?:\[UNREPLIED\] )?src=\S+ dst=(\S+) sport=\d+ dport=(\d+)(?: packets=(\d+) bytes=(\d+))?',
        ['ts', 'ev', 'proto', 'src', 'dst', 'sport', 'dport', 'po', 'bo', 'x', 'xport', 'pi', 'bi']) AS m
    FROM l WHERE starts_with(line, '[')
), srx AS (
    SELECT regexp_extract(line,
        '^<\d+>1 (\S+) (\S+) RT_FLOW - RT_FLOW_SESSION_(CREATE|CLOSE) \[\S+ (?:reason="[^"]*" )?source-address="([^"]*)" source-port="(\d+)" destination-address="([^"]*)" destination-port="(\d+)" .*?nat-source-address="([^"]*)" nat-source-port="(\d+)" .*?protocol-id="(\d+)" (?:.*?packets-from-client="(\d+)" bytes-from-client="(\d+)" packets-from-server="(\d+)" bytes-from-server="(\d+)")?',
        ['ts', 'host', 'ev', 'src', 'sport', 'dst', 'dport', 'x', 'xport', 'proto', 'po', 'bo', 'pi', 'bi']) AS m
    FROM l WHERE contains(line, ' RT_FLOW_SESSION_')
), js AS (
    SELECT regexp_extract(line,
        '^<\d+>(\w{3}\s+\d+ \d\d:\d\d:\d\d) (\S+) \S+ JSERVICES_SESSION_(OPEN|CLOSE): \S+ \S+ ([\d.]+):(\d+) \[([\d.]+):(\d+)\] -> ([\d.]+):(\d+) \((\w+)\)',
        ['ts', 'host', 'ev', 'src', 'sport', 'x', 'xport', 'dst', 'dport', 'proto']) AS m
    FROM l WHERE contains(line, 'JSERVICES_SESSION_')
), asa AS (
    SELECT regexp_extract(line,
        '^<\d+>(\w{3} \d\d \d{4} \d\d:\d\d:\d\d): %ASA-6-(305011|305012): \w+ dynamic (\w+) translation from \S+:([\d.]+)/(\d+) to \S+:([\d.]+)/(\d+)',
        ['ts', 'id', 'proto', 'src', 'sport', 'x', 'xport']) AS m
    FROM l WHERE contains(line, '%ASA-6-3050')
)
SELECT to_timestamp(m.ts::DOUBLE) AS time,
       CASE m.ev WHEN 'NEW' THEN 'session_create' ELSE 'session_delete' END AS event,
       m.proto::UTINYINT AS protocol, m.src AS src_ip, m.sport::USMALLINT AS src_port,
       m.x AS x_ip, m.xport::USMALLINT AS x_port, m.dst AS dst_ip, m.dport::USMALLINT AS dst_port,
       NULL::TIMESTAMPTZ AS end_time, nullif(m.bo, '')::UBIGINT AS bytes_out,
       nullif(m.bi, '')::UBIGINT AS bytes_in, nullif(m.po, '')::UBIGINT AS packets_out,
       nullif(m.pi, '')::UBIGINT AS packets_in, NULL AS device, 'conntrack' AS format
FROM ct
UNION ALL
SELECT m.ts::TIMESTAMPTZ,
       CASE m.ev WHEN 'CREATE' THEN 'session_create' ELSE 'session_delete' END,
       m.proto::UTINYINT, m.src, m.sport::USMALLINT, m.x, m.xport::USMALLINT, m.dst,
       m.dport::USMALLINT, CASE m.ev WHEN 'CLOSE' THEN m.ts::TIMESTAMPTZ END,
       nullif(m.bo, '')::UBIGINT, nullif(m.bi, '')::UBIGINT, nullif(m.po, '')::UBIGINT,
       nullif(m.pi, '')::UBIGINT, m.host, 'juniper'
FROM srx
UNION ALL
SELECT strptime('2026 ' || m.ts, '%Y %b %d %H:%M:%S')::TIMESTAMPTZ,
       CASE m.ev WHEN 'OPEN' THEN 'session_create' ELSE 'session_delete' END,
       CASE m.proto WHEN 'TCP' THEN 6 WHEN 'UDP' THEN 17 WHEN 'ICMP' THEN 1 END::UTINYINT,
       m.src, m.sport::USMALLINT, m.x, m.xport::USMALLINT, m.dst, m.dport::USMALLINT, NULL,
       NULL, NULL, NULL, NULL, m.host, 'juniper'
FROM js
UNION ALL
SELECT strptime(m.ts, '%b %d %Y %H:%M:%S')::TIMESTAMPTZ,
       CASE m.id WHEN '305011' THEN 'session_create' ELSE 'session_delete' END,
       CASE m.proto WHEN 'TCP' THEN 6 WHEN 'UDP' THEN 17 WHEN 'ICMP' THEN 1 END::UTINYINT,
       m.src, m.sport::USMALLINT, m.x, m.xport::USMALLINT, NULL, NULL,
       CASE m.id WHEN '305012' THEN strptime(m.ts, '%b %d %Y %H:%M:%S')::TIMESTAMPTZ END,
       NULL, NULL, NULL, NULL, NULL, 'cisco'
FROM asa;

CREATE TEMP TABLE gf AS
SELECT from_json(line, '{"time_flow_start_ns": "UBIGINT", "time_flow_end_ns": "UBIGINT",
    "sampler_address": "VARCHAR", "bytes": "UBIGINT", "packets": "UBIGINT", "src_addr": "VARCHAR",
    "dst_addr": "VARCHAR", "proto": "VARCHAR", "src_port": "USMALLINT", "dst_port": "USMALLINT",
    "post_nat_src_ipv4_address": "VARCHAR", "post_nat_src_transport_port": "USMALLINT"}') AS j
FROM l WHERE starts_with(line, '{');

-- goflow2's post-NAT records are flows and NAT observations both, as natlake stores them.
INSERT INTO nat
SELECT make_timestamp((j.time_flow_start_ns // 1000)::BIGINT)::TIMESTAMPTZ, 'mapping_observed',
       CASE j.proto WHEN 'TCP' THEN 6 WHEN 'UDP' THEN 17 WHEN 'ICMP' THEN 1 END::UTINYINT,
       j.src_addr, j.src_port, j.post_nat_src_ipv4_address, j.post_nat_src_transport_port,
       j.dst_addr, j.dst_port, make_timestamp((j.time_flow_end_ns // 1000)::BIGINT)::TIMESTAMPTZ,
       j.bytes, NULL, j.packets, NULL, j.sampler_address, 'goflow2'
FROM gf;

CREATE TEMP TABLE fw AS
SELECT strptime('2026 ' || m.ts, '%Y %b %d %H:%M:%S')::TIMESTAMPTZ AS time, m.host AS device,
       m.prefix AS rule, 'deny' AS action, m.src AS src_ip, m.dst AS dst_ip,
       CASE m.proto WHEN 'TCP' THEN 6 WHEN 'UDP' THEN 17 WHEN 'ICMP' THEN 1 END::UTINYINT AS protocol,
       m.sport::USMALLINT AS src_port, m.dport::USMALLINT AS dst_port
FROM (SELECT regexp_extract(line,
        '^<\d+>(\w{3}\s+\d+ \d\d:\d\d:\d\d) (\S+) kernel: \[[^\]]*\] (\S+) IN=\S* OUT=\S* .*?SRC=([\d.]+) DST=([\d.]+) .*?PROTO=(\w+) SPT=(\d+) DPT=(\d+)',
        ['ts', 'host', 'prefix', 'src', 'dst', 'proto', 'sport', 'dport']) AS m
      FROM l WHERE contains(line, ' kernel: '));

COPY nat TO '@OUT@/nat_events.parquet' (FORMAT parquet, COMPRESSION zstd);
COPY (SELECT make_timestamp((j.time_flow_start_ns // 1000)::BIGINT)::TIMESTAMPTZ AS time,
             make_timestamp((j.time_flow_end_ns // 1000)::BIGINT)::TIMESTAMPTZ AS end_time,
             j.sampler_address AS device, j.src_addr AS src_ip, j.src_port, j.dst_addr AS dst_ip,
             j.dst_port, j.proto AS protocol, j.post_nat_src_ipv4_address AS post_nat_src_ip,
             j.post_nat_src_transport_port AS post_nat_src_port, j.bytes, j.packets
      FROM gf) TO '@OUT@/flows.parquet' (FORMAT parquet, COMPRESSION zstd);
COPY fw TO '@OUT@/firewall.parquet' (FORMAT parquet, COMPRESSION zstd);

-- What was parsed, per table, and how many lines no pattern read (the script checks both).
COPY (SELECT (SELECT count(*) FROM nat) AS nat_events,
             (SELECT count(*) FROM gf) AS flows,
             (SELECT count(*) FROM fw) AS firewall,
             (SELECT count(*) FROM nat WHERE x_ip IS NULL OR x_ip = '' OR time IS NULL)
           + (SELECT count(*) FROM fw WHERE src_ip IS NULL OR src_ip = '') AS unparsed)
TO '@OUT@/counts.csv' (HEADER false);
