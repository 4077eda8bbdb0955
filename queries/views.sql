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

CREATE OR REPLACE VIEW nat_events AS
SELECT * FROM read_parquet(getvariable('natlake_lake') || '/lake/nat_events/*/*/*.parquet',
                           hive_partitioning = true, union_by_name = true);

CREATE OR REPLACE VIEW flows AS
SELECT * FROM read_parquet(getvariable('natlake_lake') || '/lake/flows/*/*/*.parquet',
                           hive_partitioning = true, union_by_name = true);

CREATE OR REPLACE VIEW firewall AS
SELECT * FROM read_parquet(getvariable('natlake_lake') || '/lake/firewall/*/*/*.parquet',
                           hive_partitioning = true, union_by_name = true);

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
CREATE OR REPLACE VIEW http_access AS
SELECT * FROM read_parquet(getvariable('natlake_lake') || '/lake/http_access/*/*/*.parquet',
                           hive_partitioning = true, union_by_name = true);

CREATE OR REPLACE VIEW mail AS
SELECT * FROM read_parquet(getvariable('natlake_lake') || '/lake/mail/*/*/*.parquet',
                           hive_partitioning = true, union_by_name = true);

CREATE OR REPLACE VIEW auth AS
SELECT * FROM read_parquet(getvariable('natlake_lake') || '/lake/auth/*/*/*.parquet',
                           hive_partitioning = true, union_by_name = true);
