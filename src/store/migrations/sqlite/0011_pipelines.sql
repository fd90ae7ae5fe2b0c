-- Pipelines, their runs and step runs, datasets (src/pipelines). Run and step
-- states mirror the entities projection (kinds "pipeline_run" and
-- "pipeline_step").
CREATE TABLE pipelines (
  name            TEXT    PRIMARY KEY,
  project         TEXT    NOT NULL,
  latest_version  INTEGER NOT NULL,
  webhook_secret  TEXT    NOT NULL DEFAULT '',  -- sealed (core/crypto.h), '' = none
  created_us      INTEGER NOT NULL,
  updated_us      INTEGER NOT NULL
);

CREATE TABLE pipeline_versions (
  name        TEXT    NOT NULL,
  version     INTEGER NOT NULL,
  digest      TEXT    NOT NULL,
  spec_yaml   TEXT    NOT NULL,
  spec_json   TEXT    NOT NULL,
  created_by  TEXT    NOT NULL,
  created_us  INTEGER NOT NULL,
  PRIMARY KEY (name, version)
);

CREATE TABLE pipeline_runs (
  id               TEXT    PRIMARY KEY,
  pipeline         TEXT    NOT NULL,
  version          INTEGER NOT NULL,
  project          TEXT    NOT NULL,
  state            TEXT    NOT NULL,
  params           TEXT    NOT NULL,  -- JSON object, resolved
  no_cache         INTEGER NOT NULL,
  no_cache_steps   TEXT    NOT NULL,  -- JSON array
  trigger_info     TEXT    NOT NULL,  -- JSON object
  datasets         TEXT    NOT NULL,  -- JSON: dataset inputs pinned at start {"name": version}
  tracking_run_id  TEXT    NOT NULL DEFAULT '',
  dir              TEXT    NOT NULL,
  failure          TEXT    NOT NULL DEFAULT '',
  created_by       TEXT    NOT NULL,
  created_us       INTEGER NOT NULL,
  started_us       INTEGER NOT NULL DEFAULT 0,
  finished_us      INTEGER NOT NULL DEFAULT 0,
  updated_us       INTEGER NOT NULL
);
CREATE INDEX pipeline_runs_by_pipeline ON pipeline_runs (pipeline, created_us);
CREATE INDEX pipeline_runs_by_state ON pipeline_runs (state, id);

CREATE TABLE pipeline_step_runs (
  run_id           TEXT    NOT NULL,
  step             TEXT    NOT NULL,
  position         INTEGER NOT NULL,  -- the spec's topological order
  type             TEXT    NOT NULL,
  state            TEXT    NOT NULL,
  job_id           TEXT    NOT NULL DEFAULT '',
  tracking_run_id  TEXT    NOT NULL DEFAULT '',
  cache_key        TEXT    NOT NULL DEFAULT '',
  cached_from      TEXT    NOT NULL DEFAULT '',
  inputs           TEXT    NOT NULL DEFAULT '[]',
  code             TEXT    NOT NULL DEFAULT '{}',  -- {"path": digest} of the step's `code`
  outputs          TEXT    NOT NULL DEFAULT '[]',
  result           TEXT    NOT NULL DEFAULT 'null',
  failure          TEXT    NOT NULL DEFAULT '',
  started_us       INTEGER NOT NULL DEFAULT 0,
  finished_us      INTEGER NOT NULL DEFAULT 0,
  updated_us       INTEGER NOT NULL,
  PRIMARY KEY (run_id, step)
);
CREATE INDEX pipeline_step_runs_by_cache_key ON pipeline_step_runs (cache_key, state);

-- Cron triggers: when each fires next, so a restart neither repeats nor
-- loses a firing.
CREATE TABLE pipeline_cron_state (
  pipeline  TEXT    NOT NULL,
  schedule  TEXT    NOT NULL,
  next_us   INTEGER NOT NULL,
  PRIMARY KEY (pipeline, schedule)
);

CREATE TABLE datasets (
  name            TEXT    PRIMARY KEY,
  project         TEXT    NOT NULL,
  latest_version  INTEGER NOT NULL,
  created_us      INTEGER NOT NULL,
  updated_us      INTEGER NOT NULL
);

CREATE TABLE dataset_versions (
  name        TEXT    NOT NULL,
  version     INTEGER NOT NULL,
  uri         TEXT    NOT NULL,
  digest      TEXT    NOT NULL,
  profile     TEXT    NOT NULL,  -- DatasetProfile as JSON
  source      TEXT    NOT NULL,  -- JSON
  created_by  TEXT    NOT NULL,
  created_us  INTEGER NOT NULL,
  PRIMARY KEY (name, version)
);
