#!/usr/bin/env bash
# The services the fleet tests (tests/fleet.rs, tests/e2e/test_fleet.py) and the fleet bench need:
# PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth on loopback) and Redis on 127.0.0.1:6379.
#
#   bash tests/fleet-services.sh
#
# Checks both; starts whichever is not answering with this machine's own commands; installs the
# Debian packages first when they are missing (root or passwordless sudo). Waits at most 30 s for
# each, then exits non-zero with a message that says which one is missing and why. It never stops
# or restarts a service that answers, and never touches data: the tests create their own databases
# (fbt_<pid>_<n>) and Redis key prefixes (fbt-<pid>-<n>) and drop them.
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=5432
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
WAIT_SECS=30

say() { printf '==> [fleet-services] %s\n' "$*"; }
die() { printf '\nfleet-services: FAILED: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    fi
fi
can_root() { [ "$(id -u)" = 0 ] || [ -n "$SUDO" ]; }

pg_up() { command -v pg_isready >/dev/null && pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }
redis_up() { command -v redis-cli >/dev/null && [ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

# Waits (bounded) for `$1` (a function) to succeed.
wait_for() {
    local check="$1" what="$2" i
    for ((i = 0; i < WAIT_SECS * 4; i++)); do
        "$check" && return 0
        sleep 0.25
    done
    die "$what did not answer within ${WAIT_SECS} s"
}

apt_install() {
    can_root || die "missing $* and not root (no passwordless sudo): install them (apt-get install -y $*)"
    command -v apt-get >/dev/null || die "missing $* and no apt-get on this machine"
    say "installing with apt-get: $*"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q "$@"
}

# PostgreSQL: the Debian cluster (pg_ctlcluster), trust auth for the loopback addresses.
pg_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -n1; }

pg_trust_loopback() {
    local v hba
    v="$(pg_version)"
    hba="/etc/postgresql/$v/main/pg_hba.conf"
    [ -f "$hba" ] || die "no $hba after installing postgresql"
    if ! grep -Eq '^host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
        say "pg_hba.conf: trust auth for 127.0.0.1 and ::1 (test machine only)"
        # First match wins in pg_hba.conf: put the trust lines on top.
        $SUDO sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    fi
}

INSTALLED_PG=0

start_pg() {
    if ! command -v pg_ctlcluster >/dev/null || [ -z "$(pg_version)" ]; then
        apt_install postgresql
        INSTALLED_PG=1
    fi
    # A cluster this script installed gets trust auth on loopback (a test machine); an existing one
    # is left as it is configured.
    [ "$INSTALLED_PG" = 1 ] && pg_trust_loopback
    can_root || die "PostgreSQL is not answering on $PG_HOST:$PG_PORT and starting it needs root"
    local v
    v="$(pg_version)"
    say "starting PostgreSQL $v (pg_ctlcluster $v main start)"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$v" main start \
        || die "pg_ctlcluster $v main start failed (see /var/log/postgresql/postgresql-$v-main.log)"
}

start_redis() {
    command -v redis-server >/dev/null || apt_install redis-server
    say "starting redis-server on $REDIS_HOST:$REDIS_PORT (no persistence)"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no >/dev/null \
        || die "redis-server failed to start"
}

if pg_up; then
    say "PostgreSQL answers on $PG_HOST:$PG_PORT"
else
    if ! command -v pg_isready >/dev/null; then
        apt_install postgresql-client postgresql
        INSTALLED_PG=1
    fi
    pg_up || { start_pg; wait_for pg_up "PostgreSQL on $PG_HOST:$PG_PORT"; }
    say "PostgreSQL answers on $PG_HOST:$PG_PORT"
fi
# The tests connect as postgres without a password over TCP: a cluster installed here (and already
# started by the package) gets trust auth on loopback; otherwise say so plainly when it is refused.
pg_trust_ok() { psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -w -Atqc 'SELECT 1' >/dev/null 2>&1; }
if [ "$INSTALLED_PG" = 1 ] && command -v psql >/dev/null && ! pg_trust_ok; then
    pg_trust_loopback
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$(pg_version)" main reload || true
    wait_for pg_trust_ok "PostgreSQL with trust auth on loopback"
fi
if [ -z "${FIREBREAK_TEST_PG:-}" ] && command -v psql >/dev/null; then
    psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -w -Atqc 'SELECT 1' >/dev/null 2>&1 \
        || die "PostgreSQL answers but refuses 'psql -h $PG_HOST -U postgres' without a password: add 'host all all 127.0.0.1/32 trust' to pg_hba.conf (or set FIREBREAK_TEST_PG to a URL with credentials)"
fi

if redis_up; then
    say "Redis answers on $REDIS_HOST:$REDIS_PORT"
else
    command -v redis-cli >/dev/null || apt_install redis-server
    redis_up || { start_redis; wait_for redis_up "Redis on $REDIS_HOST:$REDIS_PORT"; }
    say "Redis answers on $REDIS_HOST:$REDIS_PORT"
fi
