-- natlake: the audit log — every lookup answered: who asked, when, what, and who was named.
-- `natlake sql` builds the same `audit` table itself (its bundled DuckDB has no JSON reader);
-- in a stock DuckDB CLI (which has the json extension) run this after views.sql.
-- Columns: time, who, endpoint, asked_ip / asked_port / asked_at (single questions; NULL for a
-- batch), named_subscribers and named_inside (every match of every answer), ambiguous, asked and
-- answered (the request and the recorded answer as JSON text), hour, key (the object key).
CREATE OR REPLACE VIEW audit AS
SELECT CAST(time AS TIMESTAMPTZ) AS time, who, endpoint,
       asked ->> 'ip' AS asked_ip,
       TRY_CAST(asked ->> 'port' AS INTEGER) AS asked_port,
       asked ->> 'at' AS asked_at,
       list_filter(list_concat(
           coalesce(json_extract_string(answered, '$.matches[*].subscriber'), []),
           coalesce(json_extract_string(answered, '$[*].matches[*].subscriber'), [])),
         lambda x: x IS NOT NULL) AS named_subscribers,
       list_filter(list_concat(
           coalesce(json_extract_string(answered, '$.matches[*].src_ip'), []),
           coalesce(json_extract_string(answered, '$[*].matches[*].src_ip'), [])),
         lambda x: x IS NOT NULL) AS named_inside,
       TRY_CAST(answered ->> 'ambiguous' AS BOOLEAN) AS ambiguous,
       CAST(asked AS VARCHAR) AS asked, CAST(answered AS VARCHAR) AS answered,
       hour, regexp_extract(filename, 'audit/.*$') AS key
FROM read_json(getvariable('natlake_lake') || '/audit/*/*.json',
               columns = {time: 'VARCHAR', who: 'VARCHAR', endpoint: 'VARCHAR',
                          asked: 'JSON', answered: 'JSON'},
               hive_partitioning = true, filename = true);
