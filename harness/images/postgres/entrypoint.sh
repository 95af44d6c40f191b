#!/bin/sh
# Initialise a cluster in $PGDATA on first start, as the official postgres image does, then
# replace this shell with the server (or run another command given in its place).
set -eu

fail() {
    echo "docker-entrypoint.sh: $*" >&2
    exit 1
}

init_cluster() {
    if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
        pwfile=$POSTGRES_PASSWORD_FILE
    elif [ -n "${POSTGRES_PASSWORD:-}" ]; then
        pwfile=$(mktemp)
        printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    else
        fail "set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE"
    fi
    initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    [ "$pwfile" = "${POSTGRES_PASSWORD_FILE:-}" ] || rm -f "$pwfile"
    # initdb admits loopback clients only; the official image admits any with a password.
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    database=${POSTGRES_DB:-$POSTGRES_USER}
    if [ "$database" != postgres ]; then
        quoted=$(printf '%s' "$database" | sed 's/"/""/g')
        # Single-user mode: no server, no socket, nothing listening before the cluster is ready.
        printf 'CREATE DATABASE "%s"\n' "$quoted" | postgres --single -D "$PGDATA" postgres >/dev/null
    fi
}

if [ "${1:-}" = postgres ]; then
    shift
    [ -s "$PGDATA/PG_VERSION" ] || init_cluster
    # Loopback unless the command overrides it (`postgres -c listen_addresses='*'`).
    exec postgres -c listen_addresses=127.0.0.1 "$@"
fi
exec "$@"
