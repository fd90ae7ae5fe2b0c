-- Experiment tracking (src/tracking). Experiments and runs mirror the
-- entities projection (kinds "experiment" and "run") for their lifecycle;
-- params and metric points are telemetry (no events). Times are
-- milliseconds since the epoch, as MLflow's.
CREATE TABLE experiments (
  experiment_id      INTEGER PRIMARY KEY,
  name               TEXT    NOT NULL UNIQUE,
  artifact_location  TEXT    NOT NULL,
  lifecycle_stage    TEXT    NOT NULL,
  project            TEXT    NOT NULL,
  creation_time      INTEGER NOT NULL,
  last_update_time   INTEGER NOT NULL
);
CREATE TABLE experiment_tags (
  experiment_id  INTEGER NOT NULL,
  key            TEXT    NOT NULL,
  value          TEXT    NOT NULL,
  PRIMARY KEY (experiment_id, key)
) WITHOUT ROWID;
CREATE TABLE runs (
  run_pk           INTEGER PRIMARY KEY,
  run_uuid         TEXT    NOT NULL UNIQUE,
  experiment_id    INTEGER NOT NULL,
  name             TEXT    NOT NULL,
  user_id          TEXT    NOT NULL,
  status           TEXT    NOT NULL,
  start_time       INTEGER NOT NULL,
  end_time         INTEGER,
  lifecycle_stage  TEXT    NOT NULL,
  artifact_uri     TEXT    NOT NULL,
  project          TEXT    NOT NULL
);
CREATE INDEX runs_experiment ON runs (experiment_id, start_time);
CREATE TABLE run_params (
  run_pk  INTEGER NOT NULL,
  key     TEXT    NOT NULL,
  value   TEXT    NOT NULL,
  PRIMARY KEY (run_pk, key)
) WITHOUT ROWID;
CREATE TABLE run_tags (
  run_pk  INTEGER NOT NULL,
  key     TEXT    NOT NULL,
  value   TEXT    NOT NULL,
  PRIMARY KEY (run_pk, key)
) WITHOUT ROWID;
-- Every logged point. The index covers the history query (no table reads).
CREATE TABLE metric_points (
  run_pk  INTEGER NOT NULL,
  key     TEXT    NOT NULL,
  value   REAL    NOT NULL,
  is_nan  INTEGER NOT NULL,
  ts      INTEGER NOT NULL,
  step    INTEGER NOT NULL
);
CREATE INDEX metric_points_run_key ON metric_points (run_pk, key, step, ts, value, is_nan);
-- The latest point of each (run, key): the greatest (step, ts, value), as
-- MLflow's latest_metrics; searched and ordered by (key, value).
CREATE TABLE latest_metrics (
  run_pk  INTEGER NOT NULL,
  key     TEXT    NOT NULL,
  value   REAL    NOT NULL,
  is_nan  INTEGER NOT NULL,
  ts      INTEGER NOT NULL,
  step    INTEGER NOT NULL,
  PRIMARY KEY (run_pk, key)
) WITHOUT ROWID;
CREATE INDEX latest_metrics_key_value ON latest_metrics (key, value);
CREATE TABLE run_inputs (
  run_pk   INTEGER NOT NULL,
  name     TEXT    NOT NULL,
  digest   TEXT    NOT NULL,
  context  TEXT    NOT NULL,
  dataset  TEXT    NOT NULL,
  tags     TEXT    NOT NULL,
  position INTEGER NOT NULL,
  PRIMARY KEY (run_pk, name, digest, context)
) WITHOUT ROWID;
