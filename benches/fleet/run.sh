#!/usr/bin/env bash
# Fleet-mode bench (docs/design/fleet-mode.md §12, steps 1-5): three release replicas on one host,
# sharing a fresh PostgreSQL database and a Redis prefix, in front of examples/fake_provider.
# Measures switch propagation to every replica (p50/p99 over BATCHES batches), the time for a
# lockdown on one replica to end streams open on all three, req/s with fleet mode on vs off in the
# same run, the Redis round trip of the rate-limit script, and audit shipping throughput (a
# replica's shipper held back by a table lock during load, then its catch-up rate). Step 6 (the
# investigation queries on 10^7 rows) is benches/fleet/queries.sh.
#
#   bash benches/fleet/run.sh
#
# Needs PostgreSQL and Redis on 127.0.0.1 (bash tests/fleet-services.sh starts them), wrk, curl,
# psql, redis-cli and redis-benchmark. Knobs (environment): BATCHES (200), PAUSE_MS (50 between
# batches), WAIT_ALL (20 ?wait=all calls), STREAMS (20 per replica), DURATION (8 s per wrk run),
# ROUNDS (2 per target), CONNS (16), NO_BUILD=1 (use the binaries already built),
# FIREBREAK_BIN (another firebreak binary), FIREBREAK_TEST_PG (admin URL, default
# postgres://postgres@127.0.0.1:5432/postgres), BENCH_TAG (namespaces the database and prefix),
# TIME_LIMIT (default 1800 s, build included). CARGO_TARGET_DIR is honoured for the build.
# Prints one Markdown table; writes benches/fleet/out/results.json. Everything started is stopped,
# and the database and Redis keys are dropped, on exit.
set -euo pipefail

if [[ -z ${FIREBREAK_FLEET_BENCH_INNER:-} ]]; then
    FIREBREAK_FLEET_BENCH_INNER=1 exec timeout --foreground -s TERM -k 30 "${TIME_LIMIT:-1800}" bash "$0" "$@"
fi

cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$ROOT/benches/fleet/out
log() { printf '>> %s\n' "$*" >&2; }
die() { printf 'fleet bench: %s\n' "$*" >&2; exit 1; }

for tool in python3 wrk curl psql redis-cli redis-benchmark; do
    command -v "$tool" >/dev/null || die "$tool is not installed (wrk: apt-get install -y wrk; psql, redis-*: bash tests/fleet-services.sh)"
done
bash "$ROOT/tests/fleet-services.sh" >&2 || die "PostgreSQL and Redis must answer on 127.0.0.1"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [[ ${NO_BUILD:-0} != 1 ]]; then
    log "building release binaries (firebreak, examples/fake_provider)"
    cargo build --release --bin firebreak --example fake_provider >&2 || die "release build failed"
fi
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
FIREBREAK=${FIREBREAK_BIN:-$TARGET/release/firebreak}
PROVIDER=$TARGET/release/examples/fake_provider
[[ -x $FIREBREAK && -x $PROVIDER ]] || die "release binaries not found under $TARGET/release (run without NO_BUILD=1)"

mkdir -p "$OUT"
log "firebreak: $FIREBREAK"
exec python3 "$ROOT/benches/fleet/bench.py" "$FIREBREAK" "$PROVIDER" "$ROOT" "$OUT"
