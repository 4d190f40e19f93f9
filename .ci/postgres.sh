# Sourced by .ci/run: a throw-away PostgreSQL for the cloud tests.
# Debian's `postgresql` (installed with apt-get when missing), a data directory made for this run,
# listening on 127.0.0.1 only, trust authentication (nothing else can reach it), stopped and
# removed on exit. Exports KEYHOOK_TEST_POSTGRES_URL, which tests/cloud uses.

pg_bindir() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

pg_as_owner() {
    # initdb refuses to run as root: run the server's commands as the postgres user then.
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_start() {
    local bin
    bin="$(pg_bindir)"
    if [ -z "$bin" ]; then
        echo "ci: installing PostgreSQL (Debian's postgresql) for the cloud tests"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        bin="$(pg_bindir)"
    fi
    if [ -z "$bin" ]; then
        echo "ci: PostgreSQL is not installed and apt-get could not install it" >&2
        return 1
    fi
    PG_DATA="$(mktemp -d /tmp/keyhook-pg.XXXXXX)"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$PG_DATA"; fi
    PG_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    pg_as_owner "$bin/initdb" -D "$PG_DATA/data" -U postgres -A trust --no-sync -E UTF8 >/dev/null
    pg_as_owner "$bin/pg_ctl" -D "$PG_DATA/data" -l "$PG_DATA/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DATA -c fsync=off -c max_connections=300" start >/dev/null
    PG_BIN="$bin"
    export KEYHOOK_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
    echo "ci: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT (data $PG_DATA)"
    trap pg_stop EXIT
}

pg_stop() {
    if [ -n "${PG_DATA:-}" ]; then
        pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DATA/data" -m fast -w stop >/dev/null 2>&1 || true
        rm -rf "$PG_DATA"
        echo "ci: PostgreSQL stopped"
        PG_DATA=""
    fi
}
