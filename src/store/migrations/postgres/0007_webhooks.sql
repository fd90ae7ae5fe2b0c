-- Webhooks (src/webhooks): subscriptions, one delivery per (subscription,
-- event) and every attempt at it. Deliveries and attempts are operational
-- data, not events; creating and deleting a subscription are events.
CREATE TABLE webhook_subscriptions (
  id            TEXT    PRIMARY KEY,
  url           TEXT    NOT NULL,
  event_types   TEXT    NOT NULL,  -- JSON array of type patterns
  project       TEXT    NOT NULL DEFAULT '',
  description   TEXT    NOT NULL DEFAULT '',
  secret_sealed TEXT    NOT NULL,  -- core::SealSecret output, never the secret
  active        INTEGER NOT NULL,
  created_by    TEXT    NOT NULL,
  created_seq   BIGINT  NOT NULL,  -- seq of its webhook.created event
  created_us    BIGINT  NOT NULL,
  updated_us    BIGINT  NOT NULL
);

CREATE TABLE webhook_deliveries (
  id              TEXT    PRIMARY KEY,
  subscription_id TEXT    NOT NULL,
  event_seq       BIGINT  NOT NULL,
  event_type      TEXT    NOT NULL,
  status          TEXT    NOT NULL,  -- pending | delivered | failed
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_us BIGINT  NOT NULL,
  last_status     INTEGER NOT NULL DEFAULT 0,
  last_error      TEXT    NOT NULL DEFAULT '',
  created_us      BIGINT  NOT NULL,
  updated_us      BIGINT  NOT NULL,
  -- A redelivered event (at-least-once fan-out) cannot duplicate a delivery.
  UNIQUE (subscription_id, event_seq)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_us);
CREATE INDEX webhook_deliveries_by_subscription ON webhook_deliveries (subscription_id, id);

CREATE TABLE webhook_attempts (
  delivery_id TEXT    NOT NULL,
  attempt     INTEGER NOT NULL,
  time_us     BIGINT  NOT NULL,
  http_status INTEGER NOT NULL,  -- 0 when no response
  latency_us  BIGINT  NOT NULL,
  error       TEXT    NOT NULL DEFAULT '',
  PRIMARY KEY (delivery_id, attempt)
);
