-- natlake: the audit log — every lookup answered, who asked, what was asked, what was answered.
-- Run after views.sql in a DuckDB that has the json extension (the stock CLI does; the DuckDB
-- bundled into natlake has only parquet, so `natlake sql` cannot read these records yet).
CREATE OR REPLACE VIEW audit AS
SELECT * FROM read_json_auto(getvariable('natlake_lake') || '/audit/*/*.json',
                             hive_partitioning = true, union_by_name = true);
