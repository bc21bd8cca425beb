-- express-session-postgres: the sessions table (pgxstore's table).
-- Safe to run more than once. The library runs this same file when asked to
-- create the table, with "sessions" replaced by the configured table name.
CREATE TABLE IF NOT EXISTS sessions (
  token  TEXT PRIMARY KEY,
  data   BYTEA NOT NULL,
  expiry TIMESTAMPTZ NOT NULL
);

CREATE INDEX IF NOT EXISTS sessions_expiry_idx ON sessions (expiry);
