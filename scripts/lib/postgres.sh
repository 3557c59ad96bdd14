# shellcheck shell=bash
# Starts a throw-away PostgreSQL server on a free local port in a temporary directory, and stops it on exit.
# Source this file, then call start_postgres; it exports TEST_POSTGRES_URL (postgres://postgres@127.0.0.1:PORT).
# PG_SETTINGS overrides the server settings: the default trades durability for speed, as tests may.

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

postgres_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] || { echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; return 1; }
  echo "$dir"
}

# Runs a command as the postgres user when we are root (PostgreSQL refuses to run as root).
as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop_postgres() {
  if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ]; then
    as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
}

start_postgres() {
  PG_BIN=$(postgres_bin)
  PG_DIR=$(mktemp -d /tmp/gomon-pg.XXXXXX)
  chmod 755 "$PG_DIR"
  [ "$(id -u)" = 0 ] && chown postgres "$PG_DIR"
  local port
  port=$(free_port)
  as_postgres "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust --no-sync >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log" >&2; return 1; }
  as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=400 ${PG_SETTINGS--c fsync=off -c synchronous_commit=off}" \
    start >/dev/null || { cat "$PG_DIR/server.log" >&2; return 1; }
  export TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port"
  echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on $TEST_POSTGRES_URL ($PG_DIR)"
}
