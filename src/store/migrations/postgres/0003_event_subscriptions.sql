-- Durable subscribers (rules, webhooks, log shipping) record the last event
-- they processed, so they resume after a restart instead of starting over.
CREATE TABLE event_subscriptions (
  name       TEXT   PRIMARY KEY,
  cursor_seq BIGINT NOT NULL,
  updated_us BIGINT NOT NULL
);
