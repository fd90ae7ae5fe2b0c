-- Projection: the current lifecycle state of every entity.
CREATE TABLE entities (
  kind        TEXT   NOT NULL,
  id          TEXT   NOT NULL,
  state       TEXT   NOT NULL,
  data        TEXT   NOT NULL,
  created_seq BIGINT NOT NULL,
  updated_seq BIGINT NOT NULL,
  created_us  BIGINT NOT NULL,
  updated_us  BIGINT NOT NULL,
  PRIMARY KEY (kind, id)
);
CREATE INDEX entities_state ON entities (kind, state);
