-- The event log: append-only, hash-chained, gap-free seq. data is TEXT (not
-- jsonb) because the hash covers its exact canonical bytes.
CREATE TABLE events (
  seq            BIGINT  PRIMARY KEY,
  id             TEXT    NOT NULL UNIQUE,
  time_us        BIGINT  NOT NULL,
  type           TEXT    NOT NULL,
  subject_kind   TEXT    NOT NULL,
  subject_id     TEXT    NOT NULL,
  actor          TEXT    NOT NULL,
  reason         TEXT    NOT NULL DEFAULT '',
  correlation_id TEXT    NOT NULL DEFAULT '',
  causation_id   TEXT    NOT NULL DEFAULT '',
  data           TEXT    NOT NULL,
  prev_hash      TEXT    NOT NULL,
  hash           TEXT    NOT NULL
);
CREATE INDEX events_subject ON events (subject_kind, subject_id, seq);
CREATE INDEX events_type ON events (type, seq);
CREATE INDEX events_actor ON events (actor, seq);

-- Append-only: see the SQLite migration for why triggers and not trust.
CREATE FUNCTION kervan_events_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'events are append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
  FOR EACH ROW EXECUTE FUNCTION kervan_events_append_only();
