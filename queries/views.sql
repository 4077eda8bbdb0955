-- natlake views: one per lake table, over the Hive layout
--   lake/<table>/hour=YYYY-MM-DDTHH/x_net=<public network>/<object>.parquet
--
-- `natlake sql` runs this file for you. In a stock DuckDB CLI, set the lake root first:
--   SET VARIABLE natlake_lake = '/var/lib/natlake';            -- the data dir (file:// store)
-- For S3 / MinIO / SeaweedFS (needs DuckDB's httpfs extension):
--   LOAD httpfs;
--   CREATE SECRET natlake (TYPE s3, KEY_ID '…', SECRET '…', REGION 'us-east-1',
--                          ENDPOINT '127.0.0.1:8333', URL_STYLE 'path', USE_SSL false);
--   SET VARIABLE natlake_lake = 's3://bucket/prefix';
-- then: .read queries/views.sql
-- A table with no objects yet makes its view fail to bind; `natlake sql` substitutes an empty
-- view with the documented columns instead.

-- The instant `us` µs after the Unix epoch, as TIMESTAMPTZ. `make_timestamptz(BIGINT)` comes
-- with the ICU extension (in the stock CLI); `natlake sql`'s DuckDB has no ICU, and there
-- TIMESTAMPTZ is plain UTC, so it defines this as `make_timestamp(us)::TIMESTAMPTZ` instead.
-- (With ICU that cast would read the time in the session's time zone: not an option here.)
CREATE OR REPLACE MACRO natlake_utc_us(us) AS make_timestamptz(us);

-- An event table's rows as users see them. The lake stores the receive time as its delay after
-- `time` (`recv_delay_us`, µs: a few bits a row instead of a second 64-bit timestamp); objects
-- written before that store `recv_time` itself. Either way the view shows `recv_time` (second,
-- after `time`), so queries need not know which objects are which. The empty relation gives
-- both stored columns a type when the lake holds only one kind of object.
CREATE OR REPLACE MACRO natlake_events(tbl) AS TABLE
SELECT time, coalesce(recv_time, natlake_utc_us(epoch_us(time) + recv_delay_us)) AS recv_time,
       * EXCLUDE (time, recv_time, recv_delay_us)
FROM (SELECT * FROM read_parquet(getvariable('natlake_lake') || '/lake/' || tbl || '/*/*/*.parquet',
                                 hive_partitioning = true, union_by_name = true)
      UNION ALL BY NAME
      SELECT NULL::TIMESTAMPTZ AS recv_time, NULL::BIGINT AS recv_delay_us WHERE false);

CREATE OR REPLACE VIEW nat_events AS FROM natlake_events('nat_events');

CREATE OR REPLACE VIEW flows AS FROM natlake_events('flows');

CREATE OR REPLACE VIEW firewall AS FROM natlake_events('firewall');

CREATE OR REPLACE VIEW rejects AS
SELECT * FROM read_parquet(getvariable('natlake_lake') || '/lake/rejects/*/*.parquet',
                           hive_partitioning = true, union_by_name = true);

-- Sessions in the cgn-ec shape: one row per create/delete, "A"/"D".
CREATE OR REPLACE VIEW nat_sessions AS
SELECT time AS "timestamp",
       CASE WHEN event IN ('session_create', 'port_block_alloc', 'address_bind') THEN 'A'
            WHEN event IN ('session_delete', 'port_block_release', 'address_release') THEN 'D'
            ELSE 'I' END AS event,
       protocol, src_ip, src_port, x_ip, x_port, dst_ip, dst_port, vrf AS vrf_id, direction,
       device, raw_key, raw_record
FROM nat_events;

-- Log-aggregation tables (nginx / Apache access logs, Postfix, sshd), partitioned like the
-- NAT tables by the remote party's address (see docs/schema.md).
CREATE OR REPLACE VIEW http_access AS FROM natlake_events('http_access');

CREATE OR REPLACE VIEW mail AS FROM natlake_events('mail');

CREATE OR REPLACE VIEW auth AS FROM natlake_events('auth');

-- The inside network of an address: the enrichment's prefix when given, else the /24 (IPv4) or
-- the /64 (IPv6; from the address as written, RFC 5952 form).
CREATE OR REPLACE MACRO inside_net(ip, known) AS
    CASE WHEN known IS NOT NULL THEN known
         WHEN ip IS NULL THEN NULL
         WHEN NOT contains(ip, ':') THEN regexp_extract(ip, '^(\d+\.\d+\.\d+)\.', 1) || '.0/24'
         WHEN regexp_matches(ip, '^([0-9a-fA-F]{1,4}:){4}') THEN regexp_extract(ip, '^((?:[0-9a-fA-F]{1,4}:){4})', 1) || ':/64'
         ELSE split_part(ip, '::', 1) || '::/64' END;

-- Finished traffic, one row per flow record or closed NAT session with counters, inside side
-- first: what the traffic reports (queries/reports/) read.
CREATE OR REPLACE VIEW traffic AS
SELECT time, 'flow' AS source, src_ip AS inside_ip, src_port AS inside_port,
       coalesce(post_nat_src_ip, src_ip) AS public_ip, dst_ip, dst_port, protocol,
       bytes, packets, device, inside_net(src_ip, prefix) AS inside_network,
       subscriber, dst_asn, dst_as_org, dst_country
FROM flows
UNION ALL BY NAME
SELECT time, 'nat_session' AS source, src_ip AS inside_ip, src_port AS inside_port,
       x_ip AS public_ip, dst_ip, dst_port, protocol,
       coalesce(bytes_out, 0) + coalesce(bytes_in, 0) AS bytes,
       coalesce(packets_out, 0) + coalesce(packets_in, 0) AS packets,
       device, inside_net(src_ip, prefix) AS inside_network,
       subscriber, dst_asn, dst_as_org, dst_country
FROM nat_events
WHERE event = 'session_delete' AND (bytes_out IS NOT NULL OR bytes_in IS NOT NULL);
