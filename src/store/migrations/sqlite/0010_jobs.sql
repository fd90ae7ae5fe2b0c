-- Training jobs (src/jobs). The job's state mirrors the entities projection
-- (kind "job"); attempts are the executor's runs of it. An attempt whose
-- ended_us is 0 still holds its allocation, whatever the job's state.
CREATE TABLE jobs (
  id                TEXT    PRIMARY KEY,
  name              TEXT    NOT NULL,
  project           TEXT    NOT NULL,
  user_name         TEXT    NOT NULL,
  priority_class    TEXT    NOT NULL,
  spec              TEXT    NOT NULL,  -- JobSpec as JSON
  state             TEXT    NOT NULL,
  attempts          INTEGER NOT NULL DEFAULT 0,
  preemptions       INTEGER NOT NULL DEFAULT 0,
  queued_us         INTEGER NOT NULL,
  not_before_us     INTEGER NOT NULL DEFAULT 0,
  first_started_us  INTEGER NOT NULL DEFAULT 0,
  finished_us       INTEGER NOT NULL DEFAULT 0,
  scratch_removed   INTEGER NOT NULL DEFAULT 0,
  tracking_run_id   TEXT    NOT NULL DEFAULT '',
  failure           TEXT    NOT NULL DEFAULT '',
  retry_pending     INTEGER NOT NULL DEFAULT 0,  -- Failed, and a retry is due at not_before_us
  created_us        INTEGER NOT NULL,
  updated_us        INTEGER NOT NULL
);
CREATE INDEX jobs_by_state ON jobs (state, id);
CREATE INDEX jobs_by_project ON jobs (project, id);

CREATE TABLE job_attempts (
  job_id       TEXT    NOT NULL,
  attempt      INTEGER NOT NULL,
  executor     TEXT    NOT NULL,
  external_id  TEXT    NOT NULL DEFAULT '',
  allocation   TEXT    NOT NULL,  -- JSON array of {node, gpus, cpus, memory_mb}
  borrowed     INTEGER NOT NULL DEFAULT 0,
  admitted_us  INTEGER NOT NULL,
  started_us   INTEGER NOT NULL DEFAULT 0,
  ended_us     INTEGER NOT NULL DEFAULT 0,
  exit_kind    TEXT    NOT NULL DEFAULT '',
  exit_code    INTEGER NOT NULL DEFAULT -1,
  signal       INTEGER NOT NULL DEFAULT 0,
  detail       TEXT    NOT NULL DEFAULT '',
  PRIMARY KEY (job_id, attempt)
);
CREATE INDEX job_attempts_open ON job_attempts (ended_us);
