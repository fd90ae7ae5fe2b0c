-- A run's params, tags and dataset inputs as one JSON document,
-- {"p": [[key, value], ...], "t": [[key, value], ...],
--  "i": [[position, dataset, tags], ...]} (in no particular order), so that
-- a page of runs reads them with the runs' own rows instead of probing three
-- tables once per run. The tables stay the truth (filters and order_by use
-- them); every command that changes them rewrites the document in its
-- transaction (src/tracking: RefreshRunData), and the server fills the
-- documents still NULL when it starts, which after this migration is every
-- run.
ALTER TABLE runs ADD COLUMN data TEXT;
