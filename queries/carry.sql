-- natlake: the carry table (run after views.sql; it exists once the compact function has run).
-- The rows that opened the NAT mappings still open when each hour began (the compact function
-- writes them; `hour` is the hour they are carried into, `time` the original event's time).
CREATE OR REPLACE VIEW nat_carry AS FROM natlake_events('nat_carry');
