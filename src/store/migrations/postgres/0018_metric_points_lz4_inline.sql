-- Metric texts (metric_batches.points, metric_chunks.points) compressed with
-- lz4 and kept in the row (STORAGE MAIN) where they fit, instead of
-- uncompressed and out of line (EXTERNAL, migration 0015). A 1000-point
-- log-batch text of about 15 KB compresses to a few KB and stays in the
-- row: one heap tuple per write where it was eight TOAST chunks and their
-- index entries, which cut PostgreSQL's CPU per 1000-point request by
-- about a sixth (docs/performance.md). pglz, the default, cost a tenth of
-- the server's CPU under log-batch load; lz4 is several times cheaper.
-- Texts too large for a page even compressed still go out of line. Only
-- values written from now on change. A server built without lz4 keeps the
-- columns as they were.
DO $$
BEGIN
  ALTER TABLE metric_batches ALTER COLUMN points SET COMPRESSION lz4;
  ALTER TABLE metric_chunks ALTER COLUMN points SET COMPRESSION lz4;
  ALTER TABLE metric_batches ALTER COLUMN points SET STORAGE MAIN;
  ALTER TABLE metric_chunks ALTER COLUMN points SET STORAGE MAIN;
EXCEPTION WHEN feature_not_supported THEN
  NULL;
END
$$;
