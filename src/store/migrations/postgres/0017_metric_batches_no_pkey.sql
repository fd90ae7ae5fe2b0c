-- metric_batches is read and deleted only by run (metric_batches_run, on
-- (run_pk, id)); its primary key index on id alone was one more B-tree
-- insert on every metric write, on the metric writer's critical path. id
-- stays unique: it comes from its sequence and nothing else writes it.
ALTER TABLE metric_batches DROP CONSTRAINT metric_batches_pkey;
