-- Metric points as written: one row per (run, write) holding every key's
-- points, "key<TAB>step,timestamp,value;...<LF>" per key (the metric_chunks
-- text format after each key). A write of 1000 points of 100 keys was 100
-- metric_chunks rows whose index entries land on ~100 different B-tree
-- pages, so each commit rewrote hundreds of pages; here it is one row at
-- the end of one run's range. The metric writer compacts a run's rows into
-- per-key metric_chunks rows once they hold enough points
-- (src/tracking/metric_chunks.cc), so a history read scans a bounded
-- number of them.
CREATE TABLE metric_batches (
  id      INTEGER PRIMARY KEY,
  run_pk  INTEGER NOT NULL,
  n       INTEGER NOT NULL,
  points  TEXT    NOT NULL
);
CREATE INDEX metric_batches_run ON metric_batches (run_pk, id);
