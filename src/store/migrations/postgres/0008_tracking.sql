-- Experiment tracking (src/tracking). Experiments and runs mirror the
-- entities projection (kinds "experiment" and "run") for their lifecycle;
-- params and metric points are telemetry (no events). Times are
-- milliseconds since the epoch, as MLflow's.
CREATE TABLE experiments (
  experiment_id      BIGINT  PRIMARY KEY,
  name               TEXT    NOT NULL UNIQUE,
  artifact_location  TEXT    NOT NULL,
  lifecycle_stage    TEXT    NOT NULL,
  project            TEXT    NOT NULL,
  creation_time      BIGINT  NOT NULL,
  last_update_time   BIGINT  NOT NULL
);
CREATE TABLE experiment_tags (
  experiment_id  BIGINT  NOT NULL,
  key            TEXT    NOT NULL,
  value          TEXT    NOT NULL,
  PRIMARY KEY (experiment_id, key)
);
CREATE TABLE runs (
  run_pk           BIGINT  PRIMARY KEY,
  run_uuid         TEXT    NOT NULL UNIQUE,
  experiment_id    BIGINT  NOT NULL,
  name             TEXT    NOT NULL,
  user_id          TEXT    NOT NULL,
  status           TEXT    NOT NULL,
  start_time       BIGINT  NOT NULL,
  end_time         BIGINT,
  lifecycle_stage  TEXT    NOT NULL,
  artifact_uri     TEXT    NOT NULL,
  project          TEXT    NOT NULL
);
CREATE INDEX runs_experiment ON runs (experiment_id, start_time);
CREATE TABLE run_params (
  run_pk  BIGINT  NOT NULL,
  key     TEXT    NOT NULL,
  value   TEXT    NOT NULL,
  PRIMARY KEY (run_pk, key)
);
CREATE TABLE run_tags (
  run_pk  BIGINT  NOT NULL,
  key     TEXT    NOT NULL,
  value   TEXT    NOT NULL,
  PRIMARY KEY (run_pk, key)
);
-- Every logged point. The index covers the history query (no table reads).
CREATE TABLE metric_points (
  run_pk  BIGINT  NOT NULL,
  key     TEXT    NOT NULL,
  value   DOUBLE PRECISION NOT NULL,
  is_nan  BIGINT  NOT NULL,
  ts      BIGINT  NOT NULL,
  step    BIGINT  NOT NULL
);
CREATE INDEX metric_points_run_key ON metric_points (run_pk, key, step, ts, value, is_nan);
-- The latest point of each (run, key): the greatest (step, ts, value), as
-- MLflow's latest_metrics; searched and ordered by (key, value).
CREATE TABLE latest_metrics (
  run_pk  BIGINT  NOT NULL,
  key     TEXT    NOT NULL,
  value   DOUBLE PRECISION NOT NULL,
  is_nan  BIGINT  NOT NULL,
  ts      BIGINT  NOT NULL,
  step    BIGINT  NOT NULL,
  PRIMARY KEY (run_pk, key)
);
CREATE INDEX latest_metrics_key_value ON latest_metrics (key, value);
CREATE TABLE run_inputs (
  run_pk   BIGINT  NOT NULL,
  name     TEXT    NOT NULL,
  digest   TEXT    NOT NULL,
  context  TEXT    NOT NULL,
  dataset  TEXT    NOT NULL,
  tags     TEXT    NOT NULL,
  position BIGINT  NOT NULL,
  PRIMARY KEY (run_pk, name, digest, context)
);
