-- The MLflow model registry API over the registry (src/registry/mlflow_routes.cc).
-- stage: MLflow's current_stage ("None" | "Staging" | "Production" |
-- "Archived"), a routing label beside the lifecycle state; source: the
-- source URI as the client gave it (artifact_uri holds where it resolved
-- to); run_link: MLflow's link to a run on another tracking server.
ALTER TABLE model_versions ADD COLUMN stage TEXT NOT NULL DEFAULT 'None';
ALTER TABLE model_versions ADD COLUMN source TEXT NOT NULL DEFAULT '';
ALTER TABLE model_versions ADD COLUMN run_link TEXT NOT NULL DEFAULT '';
UPDATE model_versions SET stage = 'Archived' WHERE state = 'Archived';
CREATE INDEX model_versions_stage ON model_versions (model, stage, version);
-- The highest version number a deleted (or renamed) model name had, so a
-- model created under that name again continues the numbering and never
-- reuses a "<model>:<version>" entity id of the audit log.
CREATE TABLE registered_model_tombstones (
  name          TEXT    PRIMARY KEY,
  last_version  INTEGER NOT NULL,
  deleted_us    INTEGER NOT NULL,
  deleted_by    TEXT    NOT NULL
);
