-- The project (team) an event belongs to, for audit queries by project.
-- Existing events belong to no project (''); see ComputeEventHash for why
-- their hashes stay valid.
ALTER TABLE events ADD COLUMN project TEXT NOT NULL DEFAULT '';
CREATE INDEX events_project ON events (project, seq);
