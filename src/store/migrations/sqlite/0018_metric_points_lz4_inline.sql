-- Nothing to do on SQLite, which neither compresses nor moves values out of
-- the row. On PostgreSQL this migration stores metric texts compressed with
-- lz4 in the row (see there).
SELECT 1;
