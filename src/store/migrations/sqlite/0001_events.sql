-- The event log: append-only, hash-chained, gap-free seq.
CREATE TABLE events (
  seq            INTEGER PRIMARY KEY,
  id             TEXT    NOT NULL UNIQUE,
  time_us        INTEGER NOT NULL,
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

-- Append-only: the application never updates or deletes an event. Someone
-- with direct database access can drop these triggers; the hash chain is
-- what catches that (kervan audit verify).
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
