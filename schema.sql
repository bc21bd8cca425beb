-- express-session-postgres: the sessions table, schema version 3.
-- Safe to run more than once, and on a table of version 1 (pgxstore's table:
-- token, data, expiry) or 2, which it upgrades in place without losing a row.
-- The library runs this same file (migrate()), with "sessions" replaced by
-- the configured table name, under an advisory lock.

CREATE TABLE IF NOT EXISTS sessions (
  token     TEXT PRIMARY KEY,               -- the session id, or its SHA-256 with hashTokens
  data      BYTEA NOT NULL,                 -- the session, or its AES-256-GCM seal with secret
  expiry    TIMESTAMPTZ NOT NULL,
  created   TIMESTAMPTZ NOT NULL DEFAULT now(),  -- for absoluteTimeout
  owner     TEXT,                           -- for destroyByOwner / listByOwner
  destroyed BOOLEAN NOT NULL DEFAULT false, -- a tombstone: destroyed, must not come back
  version   BIGINT NOT NULL DEFAULT 0       -- counts writes of data: a write can require the one it read
);

-- Version 1 -> 2. Rows of a version 1 table count as created now.
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS created TIMESTAMPTZ NOT NULL DEFAULT now();
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS owner TEXT;
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS destroyed BOOLEAN NOT NULL DEFAULT false;
-- Version 2 -> 3 (a constant default: no table rewrite).
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 0;

CREATE INDEX IF NOT EXISTS sessions_expiry_idx ON sessions (expiry);
CREATE INDEX IF NOT EXISTS sessions_owner_idx ON sessions (owner) WHERE owner IS NOT NULL;

COMMENT ON TABLE sessions IS 'express-session-postgres schema 3';
