# Sourced by .ci/run: start a throw-away PostgreSQL cluster (Debian's `postgresql` package) on a local
# Unix socket as a non-root user, and export HARNESS_TEST_PG_URL for the board tests
# (tests/reliability/test_board_writers.py); the cluster stops when the CI shell exits.
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PG_DIR=$(mktemp -d /tmp/harness-pg.XXXXXX)
chmod 755 "$PG_DIR"
PG_AS=()
if [ "$(id -u)" -eq 0 ]; then  # initdb refuses to run as root: use the package's `postgres` user
  PG_AS=(runuser -u postgres --)
  chown postgres "$PG_DIR"
fi
PG_PORT=${HARNESS_TEST_PG_PORT:-54329}
"${PG_AS[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U harness >/dev/null
"${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
  -o "-k $PG_DIR -p $PG_PORT -c listen_addresses=''" start >/dev/null
"${PG_AS[@]}" "$PG_BIN/createdb" -h "$PG_DIR" -p "$PG_PORT" -U harness harness_test
trap '"${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null || true; rm -rf "$PG_DIR"' EXIT
export HARNESS_TEST_PG_URL="postgresql+psycopg://harness@/harness_test?host=$PG_DIR&port=$PG_PORT"
