-- The model registry (src/registry). JSON columns hold canonical JSON text.
-- A version's state mirrors the entities projection (kind model_version),
-- updated in the same transaction.
CREATE TABLE registered_models (
  name            TEXT    PRIMARY KEY,
  project         TEXT    NOT NULL,
  description     TEXT    NOT NULL DEFAULT '',
  tags            TEXT    NOT NULL DEFAULT '{}',
  gate            TEXT    NOT NULL DEFAULT '[]',
  latest_version  BIGINT NOT NULL DEFAULT 0,
  created_us      BIGINT NOT NULL,
  created_by      TEXT    NOT NULL,
  updated_us      BIGINT NOT NULL
);
CREATE INDEX registered_models_project ON registered_models (project, name);
CREATE TABLE model_versions (
  model          TEXT    NOT NULL REFERENCES registered_models (name),
  version        BIGINT NOT NULL,
  project        TEXT    NOT NULL,
  state          TEXT    NOT NULL,
  source_run_id  TEXT    NOT NULL DEFAULT '',
  artifact_uri   TEXT    NOT NULL DEFAULT '',
  metrics        TEXT    NOT NULL DEFAULT '{}',
  signature      TEXT    NOT NULL DEFAULT 'null',
  tags           TEXT    NOT NULL DEFAULT '{}',
  description    TEXT    NOT NULL DEFAULT '',
  validation     TEXT    NOT NULL DEFAULT 'null',
  created_us     BIGINT NOT NULL,
  created_by     TEXT    NOT NULL,
  updated_us     BIGINT NOT NULL,
  PRIMARY KEY (model, version)
);
CREATE INDEX model_versions_state ON model_versions (model, state, version);
CREATE INDEX model_versions_run ON model_versions (source_run_id);
CREATE TABLE model_aliases (
  model       TEXT    NOT NULL REFERENCES registered_models (name),
  alias       TEXT    NOT NULL,
  version     BIGINT NOT NULL,
  updated_us  BIGINT NOT NULL,
  updated_by  TEXT    NOT NULL,
  PRIMARY KEY (model, alias)
);
-- Every alias move (version 0 = deleted), for lineage and audit queries.
CREATE TABLE model_alias_history (
  model             TEXT    NOT NULL,
  alias             TEXT    NOT NULL,
  seq               BIGINT NOT NULL PRIMARY KEY,
  version           BIGINT NOT NULL,
  previous_version  BIGINT NOT NULL,
  time_us           BIGINT NOT NULL,
  actor             TEXT    NOT NULL,
  reason            TEXT    NOT NULL
);
CREATE INDEX model_alias_history_model ON model_alias_history (model, alias, seq);
