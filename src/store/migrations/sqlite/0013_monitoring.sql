-- Monitoring: reference profiles, monitors, their evaluations, ground truth,
-- alerts; and the rule engine's rules, versions, condition state and actions.

-- The training data's profile of a model version (profile.h, JSON).
CREATE TABLE reference_profiles (
  model       TEXT    NOT NULL,
  version     INTEGER  NOT NULL,
  source      TEXT    NOT NULL,
  profile     TEXT    NOT NULL,
  created_us  INTEGER  NOT NULL,
  PRIMARY KEY (model, version)
);

-- One monitor per endpoint (its state lives in the entities projection).
CREATE TABLE monitors (
  id                TEXT    PRIMARY KEY,
  model             TEXT    NOT NULL,
  version           INTEGER  NOT NULL,
  project           TEXT    NOT NULL,
  config            TEXT    NOT NULL,
  cursor            INTEGER  NOT NULL,
  window_opened_us  INTEGER  NOT NULL,
  windows           INTEGER  NOT NULL,
  baseline          TEXT    NOT NULL,
  last              TEXT    NOT NULL,
  created_us        INTEGER  NOT NULL,
  updated_us        INTEGER  NOT NULL
);

-- Every evaluation's numbers (telemetry: the transition events carry the summary).
CREATE TABLE monitor_evaluations (
  id                INTEGER PRIMARY KEY AUTOINCREMENT,
  monitor           TEXT    NOT NULL,
  model             TEXT    NOT NULL,
  version           INTEGER  NOT NULL,
  window_no         INTEGER  NOT NULL,
  from_sample       INTEGER  NOT NULL,
  to_sample         INTEGER  NOT NULL,
  started_us        INTEGER  NOT NULL,
  ended_us          INTEGER  NOT NULL,
  rows_seen         INTEGER  NOT NULL,
  labeled           INTEGER  NOT NULL,
  drift             TEXT    NOT NULL,
  prediction_drift  TEXT    NOT NULL,
  performance       TEXT    NOT NULL,
  metrics           TEXT    NOT NULL,
  decision          TEXT    NOT NULL,
  reasons           TEXT    NOT NULL,
  performance_us    INTEGER  NOT NULL,
  created_us        INTEGER  NOT NULL,
  updated_us        INTEGER  NOT NULL
);
CREATE INDEX monitor_evaluations_by_monitor ON monitor_evaluations (monitor, id);
CREATE INDEX monitor_evaluations_by_time ON monitor_evaluations (ended_us);

-- Ground truth by request id; joined to serving_samples when evaluated.
CREATE TABLE feedback (
  request_id   TEXT    PRIMARY KEY,
  endpoint     TEXT    NOT NULL,
  label        TEXT    NOT NULL,
  actor        TEXT    NOT NULL,
  received_us  INTEGER  NOT NULL
);
CREATE INDEX feedback_by_endpoint ON feedback (endpoint, received_us);
CREATE INDEX serving_samples_by_request ON serving_samples (request_id);

CREATE TABLE alerts (
  alert_key     TEXT    PRIMARY KEY,
  rule          TEXT    NOT NULL,
  subject       TEXT    NOT NULL,
  severity      TEXT    NOT NULL,
  summary       TEXT    NOT NULL,
  description   TEXT    NOT NULL,
  labels        TEXT    NOT NULL,
  state         TEXT    NOT NULL,
  starts_us     INTEGER  NOT NULL,
  ends_us       INTEGER  NOT NULL,
  last_sent_us  INTEGER  NOT NULL,
  send_error    TEXT    NOT NULL
);

CREATE TABLE rules (
  name        TEXT    PRIMARY KEY,
  project     TEXT    NOT NULL,
  version     INTEGER  NOT NULL,
  enabled     INTEGER  NOT NULL,
  created_by  TEXT    NOT NULL,
  created_us  INTEGER  NOT NULL,
  updated_us  INTEGER  NOT NULL
);

CREATE TABLE rule_versions (
  name        TEXT    NOT NULL,
  version     INTEGER  NOT NULL,
  yaml        TEXT    NOT NULL,
  spec        TEXT    NOT NULL,
  digest      TEXT    NOT NULL,
  created_by  TEXT    NOT NULL,
  created_us  INTEGER  NOT NULL,
  PRIMARY KEY (name, version)
);

-- The condition's memory per rule and subject (for, cooldown, alert).
CREATE TABLE rule_state (
  rule            TEXT    NOT NULL,
  subject         TEXT    NOT NULL,
  consecutive     INTEGER  NOT NULL,
  since_us        INTEGER  NOT NULL,
  last_fired_us   INTEGER  NOT NULL,
  alert_active    INTEGER  NOT NULL,
  last_eval_us    INTEGER  NOT NULL,
  PRIMARY KEY (rule, subject)
);
CREATE INDEX rule_state_by_subject ON rule_state (subject);

-- Actions decided by firings (or approvals), executed and retried.
CREATE TABLE rule_actions (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  rule          TEXT    NOT NULL,
  rule_version  INTEGER  NOT NULL,
  decision_id   TEXT    NOT NULL,
  position      INTEGER  NOT NULL,
  type          TEXT    NOT NULL,
  params        TEXT    NOT NULL,
  state         TEXT    NOT NULL,
  attempts      INTEGER  NOT NULL,
  next_us       INTEGER  NOT NULL,
  result        TEXT    NOT NULL,
  error         TEXT    NOT NULL,
  created_us    INTEGER  NOT NULL,
  updated_us    INTEGER  NOT NULL
);
CREATE INDEX rule_actions_pending ON rule_actions (state, next_us);
