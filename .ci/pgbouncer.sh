#!/usr/bin/env bash
# Starts PgBouncer in transaction mode on 127.0.0.1:6432, in front of the
# PostgreSQL server on 127.0.0.1:5432, so the test suite can run through it
# (TEST_PGBOUNCER_URL=postgres://postgres@127.0.0.1:6432/test).
# Installs Debian's pgbouncer when missing. Running it again is harmless:
# if something already answers on the port, it leaves it alone.
set -euo pipefail

LISTEN_HOST=127.0.0.1
LISTEN_PORT=${PGBOUNCER_PORT:-6432}
SERVER_HOST=127.0.0.1
SERVER_PORT=5432
RUN_DIR=${PGBOUNCER_DIR:-/tmp/express-session-postgres-pgbouncer}

answers() {
  pg_isready -q -h "$LISTEN_HOST" -p "$LISTEN_PORT" -d test -U postgres
}

if answers; then
  echo "== pgbouncer already answers on $LISTEN_HOST:$LISTEN_PORT"
  exit 0
fi

if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
  echo "== installing pgbouncer"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null
fi
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)

# PgBouncer refuses to run as root; it runs as postgres and must be able to
# write its log and pid files.
mkdir -p "$RUN_DIR"
cat >"$RUN_DIR/pgbouncer.ini" <<EOF
[databases]
test = host=$SERVER_HOST port=$SERVER_PORT dbname=test

[pgbouncer]
listen_addr = $LISTEN_HOST
listen_port = $LISTEN_PORT
unix_socket_dir =
auth_type = trust
auth_file = $RUN_DIR/userlist.txt
pool_mode = transaction
max_client_conn = 200
default_pool_size = 20
logfile = $RUN_DIR/pgbouncer.log
pidfile = $RUN_DIR/pgbouncer.pid
EOF
echo '"postgres" ""' >"$RUN_DIR/userlist.txt"
chown -R postgres: "$RUN_DIR"

# A pid file left by a pgbouncer that died would stop a new one from starting.
if [ -f "$RUN_DIR/pgbouncer.pid" ] && ! kill -0 "$(cat "$RUN_DIR/pgbouncer.pid")" 2>/dev/null; then
  rm -f "$RUN_DIR/pgbouncer.pid"
fi

echo "== starting pgbouncer (transaction mode) on $LISTEN_HOST:$LISTEN_PORT"
"$PGBOUNCER" -d -u postgres "$RUN_DIR/pgbouncer.ini"

for _ in $(seq 1 50); do
  if answers; then
    echo "== pgbouncer answers on $LISTEN_HOST:$LISTEN_PORT"
    exit 0
  fi
  sleep 0.2
done
echo "pgbouncer did not answer on $LISTEN_HOST:$LISTEN_PORT; its log:" >&2
tail -n 20 "$RUN_DIR/pgbouncer.log" >&2 || true
exit 1
