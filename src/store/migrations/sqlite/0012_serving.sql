-- Serving (src/serving): endpoints, rollouts and stored request samples.
-- A rollout's state mirrors the entities projection (kind "deployment").
CREATE TABLE serving_endpoints (
  name              TEXT    PRIMARY KEY,
  project           TEXT    NOT NULL,
  model             TEXT    NOT NULL,
  stable_version    INTEGER NOT NULL DEFAULT 0,  -- 0: nothing deployed yet
  previous_version  INTEGER NOT NULL DEFAULT 0,  -- kept warm for an instant rollback
  rollout_id        TEXT    NOT NULL DEFAULT '', -- the active rollout, '' = none
  sample_percent    REAL    NOT NULL,
  created_by        TEXT    NOT NULL,
  created_us        INTEGER NOT NULL,
  updated_us        INTEGER NOT NULL
);

CREATE TABLE serving_rollouts (
  id                 TEXT    PRIMARY KEY,
  endpoint           TEXT    NOT NULL,
  model              TEXT    NOT NULL,
  project            TEXT    NOT NULL,
  candidate_version  INTEGER NOT NULL,
  stable_version     INTEGER NOT NULL,
  spec               TEXT    NOT NULL,  -- RolloutSpec as JSON
  state              TEXT    NOT NULL,
  phase              TEXT    NOT NULL,  -- stable | shadow | canary | preview
  step               INTEGER NOT NULL,
  step_started_us    INTEGER NOT NULL,
  step_requests      INTEGER NOT NULL,
  failures           INTEGER NOT NULL,
  last_evaluation    TEXT    NOT NULL,  -- JSON, 'null' before the first
  reason             TEXT    NOT NULL,
  outcome            TEXT    NOT NULL,
  created_by         TEXT    NOT NULL,
  created_us         INTEGER NOT NULL,
  updated_us         INTEGER NOT NULL,
  finished_us        INTEGER NOT NULL
);
CREATE INDEX serving_rollouts_by_endpoint ON serving_rollouts (endpoint, created_us);

-- Telemetry, not events: a configurable share of requests and answers.
CREATE TABLE serving_samples (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  endpoint    TEXT    NOT NULL,
  model       TEXT    NOT NULL,
  version     INTEGER NOT NULL,
  rollout_id  TEXT    NOT NULL,
  side        TEXT    NOT NULL,
  request_id  TEXT    NOT NULL,
  time_us     INTEGER NOT NULL,
  input       TEXT    NOT NULL,
  output      TEXT    NOT NULL,
  latency_us  INTEGER NOT NULL,
  error       TEXT    NOT NULL
);
CREATE INDEX serving_samples_by_endpoint ON serving_samples (endpoint, id);
