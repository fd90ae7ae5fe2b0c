-- Projection: the current lifecycle state of every entity, rebuilt from the
-- event log on demand.
CREATE TABLE entities (
  kind        TEXT    NOT NULL,
  id          TEXT    NOT NULL,
  state       TEXT    NOT NULL,
  data        TEXT    NOT NULL,
  created_seq INTEGER NOT NULL,
  updated_seq INTEGER NOT NULL,
  created_us  INTEGER NOT NULL,
  updated_us  INTEGER NOT NULL,
  PRIMARY KEY (kind, id)
);
CREATE INDEX entities_state ON entities (kind, state);
