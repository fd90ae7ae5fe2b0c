-- Metric points in chunks: one row per (run, key) per write instead of one
-- row per point. A log-batch of 1000 points of one key is one row, so the
-- B-tree work and the bytes written per point fall, and get-history reads a
-- few hundred rows for 100,000 points instead of 100,000 index entries.
-- `points` is text, "step,timestamp,value;" per point in the order written
-- (value: shortest round-trip decimal, or nan / inf / -inf); see
-- src/tracking/metric_chunks.cc. Points written before this migration stay
-- in metric_points, and get-history reads both.
CREATE TABLE metric_chunks (
  id      BIGSERIAL PRIMARY KEY,
  run_pk  BIGINT  NOT NULL,
  key     TEXT    NOT NULL,
  n       BIGINT  NOT NULL,
  points  TEXT    NOT NULL
);
CREATE INDEX metric_chunks_run_key ON metric_chunks (run_pk, key, id);
