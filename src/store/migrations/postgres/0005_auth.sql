-- Identity and access (src/auth). Projections of principal.*, project.* and
-- token.* events; token secrets are never stored, only SHA-256(secret).
CREATE TABLE principals (
  name          TEXT    PRIMARY KEY,
  kind          TEXT    NOT NULL,
  display_name  TEXT    NOT NULL DEFAULT '',
  created_us    BIGINT NOT NULL,
  created_by    TEXT    NOT NULL,
  disabled_us   BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE projects (
  name         TEXT    PRIMARY KEY,
  description  TEXT    NOT NULL DEFAULT '',
  created_us   BIGINT NOT NULL,
  created_by   TEXT    NOT NULL
);
CREATE TABLE role_bindings (
  principal   TEXT    NOT NULL REFERENCES principals (name),
  role        TEXT    NOT NULL,
  project     TEXT    NOT NULL DEFAULT '',
  created_us  BIGINT NOT NULL,
  created_by  TEXT    NOT NULL,
  PRIMARY KEY (principal, role, project)
);
CREATE TABLE api_tokens (
  id           TEXT    PRIMARY KEY,
  principal    TEXT    NOT NULL REFERENCES principals (name),
  name         TEXT    NOT NULL DEFAULT '',
  secret_hash  TEXT    NOT NULL,
  created_us   BIGINT NOT NULL,
  created_by   TEXT    NOT NULL,
  expires_us   BIGINT NOT NULL DEFAULT 0,
  revoked_us   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX api_tokens_principal ON api_tokens (principal);
