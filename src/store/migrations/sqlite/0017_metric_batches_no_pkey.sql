-- Nothing to do on SQLite: metric_batches.id is the table's rowid (INTEGER
-- PRIMARY KEY), which costs no index of its own. On PostgreSQL this
-- migration drops the primary key index on id alone (see there).
SELECT 1;
