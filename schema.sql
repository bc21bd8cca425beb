-- express-session-postgres: the sessions table, schema version 4.
-- Safe to run more than once, and on a table of version 1 (pgxstore's table:
-- token, data, expiry), 2 or 3, which it upgrades in place without losing a row.
-- The library runs this same file (migrate()), with "sessions" replaced by
-- the configured table name, under an advisory lock.

CREATE TABLE IF NOT EXISTS sessions (
  token     TEXT PRIMARY KEY,               -- the session id, or its SHA-256 with hashTokens
  data      BYTEA NOT NULL,                 -- the session, or its AES-256-GCM seal with secret
  expiry    TIMESTAMPTZ NOT NULL,
  created   TIMESTAMPTZ NOT NULL DEFAULT now(),  -- for absoluteTimeout
  owner     TEXT,                           -- for destroyByOwner / listByOwner
  destroyed BOOLEAN NOT NULL DEFAULT false, -- a tombstone: destroyed, must not come back
  version   BIGINT NOT NULL DEFAULT 0,      -- counts writes of data: a write can require the one it read
  sweep_at  TIMESTAMPTZ NOT NULL DEFAULT '-infinity'  -- when the sweep looks at the row next; never after expiry
);

-- Version 1 -> 2. Rows of a version 1 table count as created now.
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS created TIMESTAMPTZ NOT NULL DEFAULT now();
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS owner TEXT;
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS destroyed BOOLEAN NOT NULL DEFAULT false;
-- Version 2 -> 3 (a constant default: no table rewrite).
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 0;
-- Version 3 -> 4. The sweep finds due rows through sweep_at, which a write
-- changes only when it moves the expiry earlier, instead of through an index
-- on expiry, which every set and touch moves: with no indexed column changed,
-- PostgreSQL can update a row in place (HOT), writing less WAL and no index
-- entries (measured in the repository's bench/LAYOUT.md). Existing rows start due (-infinity, a constant
-- default: no table rewrite); the sweep re-files each once (sweep_at = expiry).
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS sweep_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity';

CREATE INDEX IF NOT EXISTS sessions_sweep_idx ON sessions (sweep_at);
CREATE INDEX IF NOT EXISTS sessions_owner_idx ON sessions (owner) WHERE owner IS NOT NULL;
-- Versions 1-3 swept through this index; kept, it would make every write non-HOT.
DROP INDEX IF EXISTS sessions_expiry_idx;

COMMENT ON TABLE sessions IS 'express-session-postgres schema 4';
