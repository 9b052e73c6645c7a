#!/usr/bin/env bash
# The three investigation queries of the README ("Running a fleet" → "Investigation queries") on
# ROWS (default 10⁷) synthetic audit_records shaped like real ones: 3 replicas, 5,000 users, sessions
# of 20 requests, 30 days of traffic, 2 % flagged, 0.1 % with a canary. Creates the database
# `fbbench_h5_queries` (dropped first if a previous run left it, and dropped on exit), applies the
# fleet schema (`firebreak fleet migrate --postgres` when the binary has it, else the
# src/fleet/sql/*.sql files with psql), bulk-loads with the audit indexes dropped and rebuilds them
# from the schema (the load is faster that way; the indexes are the schema's own), VACUUM ANALYZE,
# then EXPLAIN (ANALYZE, BUFFERS) of each query twice (cold-ish, then warm) and prints the plans and
# a Markdown table of the warm times.
#
#   bash benches/fleet/queries.sh               # PGHOST/PGPORT/PGUSER default to 127.0.0.1/5432/postgres
#   ROWS=2000000 bash benches/fleet/queries.sh  # a quicker run
#
# Heavy: about 5 GB on disk and 10–30 minutes of one core at 10⁷ rows on a busy 2-core machine.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROWS=${ROWS:-10000000}
DB=${DB:-fbbench_h5_queries}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
BIN=${FIREBREAK_BIN:-target/debug/firebreak}
psql_q() { psql -X -v ON_ERROR_STOP=1 -q "$@"; }
now() { date +%s.%N; }

psql_q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null
psql_q -d postgres -c "CREATE DATABASE $DB" >/dev/null
trap 'psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true' EXIT

URL="postgres://$PGUSER@$PGHOST:$PGPORT/$DB"
if [[ -x $BIN ]] && "$BIN" fleet migrate --help >/dev/null 2>&1; then
    echo "schema: $BIN fleet migrate"
    "$BIN" fleet migrate --postgres "$URL"
else
    echo "schema: psql -f src/fleet/sql/*.sql"
    for f in src/fleet/sql/*.sql; do psql_q -d "$DB" -f "$f" >/dev/null; done
fi

# The audit indexes as the schema declares them, rebuilt after the load.
mapfile -t INDEXES < <(cat src/fleet/sql/*.sql | grep -E '^CREATE INDEX audit_[a-z_]+ +ON audit_records')
for ix in "${INDEXES[@]}"; do
    name=$(awk '{print $3}' <<<"$ix")
    psql_q -d "$DB" -c "DROP INDEX $name" >/dev/null
done

echo "loading $ROWS rows…"
t0=$(now)
CHUNK=1000000
for ((lo = 1; lo <= ROWS; lo += CHUNK)); do
    hi=$((lo + CHUNK - 1))
    ((hi > ROWS)) && hi=$ROWS
    # i: global record number; replica = i % 3; seq = i / 3 + 1 per replica; time spread evenly over
    # the last 30 days, oldest first; user of 5,000; a session every 20 records; one record in 50
    # flagged (a block or an injection), one in 1,000 a canary.
    psql_q -d "$DB" <<SQL
SET synchronous_commit = off;
INSERT INTO audit_records (replica_id, seq, time, kind, event, user_id, tenant, key_id, session, request_id,
                           rules, has_canary, flagged, line)
SELECT 'replica-' || (i % 3),
       i / 3 + 1,
       now() - interval '30 days' * (1 - i::float8 / $ROWS),
       CASE WHEN i % 10 = 9 THEN 'mcp' ELSE 'request' END,
       'decision',
       'user-' || ((i * 7919) % 5000),
       'tenant-' || ((i * 7919) % 5000 % 40),
       'key-' || ((i * 7919) % 5000 % 200),
       'sha256:' || substr(md5((i / 20)::text), 1, 16),
       'req-' || md5(i::text),
       CASE WHEN i % 1000 = 7 THEN ARRAY['canary.support_bot']
            WHEN i % 50 = 0 THEN ARRAY['block.prompt_injection', 'injection.ignore_previous']
            WHEN i % 7 = 0 THEN ARRAY['aws_access_key_id']
            ELSE '{}'::text[] END,
       i % 1000 = 7,
       i % 50 = 0 OR i % 1000 = 7,
       '{"decisions":[],"duration_us":' || (i % 90000) || ',"endpoint":"/v1/chat/completions","event":"decision","key_id":"key-'
         || ((i * 7919) % 5000 % 200) || '","kid":"3f9a2c1b","kind":"request","model":"gpt-4o","prev":"' || md5(i::text)
         || md5((i + 1)::text) || '","seq":' || (i / 3 + 1) || ',"status":200,"tenant":"tenant-' || ((i * 7919) % 5000 % 40)
         || '","time":"2026-12-03T10:00:00.000Z","user":"user-' || ((i * 7919) % 5000) || '","mac":"'
         || md5((i + 2)::text) || md5((i + 3)::text) || '"}'
FROM generate_series($lo::bigint, $hi::bigint) AS g(i);
SQL
    printf '  %d rows (%.0f s)\n' "$hi" "$(echo "$(now) - $t0" | bc)"
done
t_load=$(echo "$(now) - $t0" | bc)

echo "building the ${#INDEXES[@]} audit indexes…"
t0=$(now)
psql_q -d "$DB" -c "SET maintenance_work_mem = '256MB'" "${INDEXES[@]/#/-c}" >/dev/null
t_index=$(echo "$(now) - $t0" | bc)
t0=$(now)
psql_q -d "$DB" -c "VACUUM ANALYZE audit_records" >/dev/null
t_vacuum=$(echo "$(now) - $t0" | bc)

SIZE=$(psql -X -tA -d "$DB" -c "SELECT pg_size_pretty(pg_total_relation_size('audit_records'))")
TABLE=$(psql -X -tA -d "$DB" -c "SELECT pg_size_pretty(pg_relation_size('audit_records'))")
IXSIZES=$(psql -X -tA -F ' ' -d "$DB" -c "SELECT indexrelname, pg_size_pretty(pg_relation_size(indexrelid)) FROM pg_stat_user_indexes WHERE relname = 'audit_records' ORDER BY indexrelname")
SESSION=$(psql -X -tA -d "$DB" -c "SELECT substr(md5('$((ROWS / 40))'), 1, 16)")

declare -A Q
Q[1_canary]="SELECT replica_id, seq, time, user_id, tenant, session, request_id, rules
FROM audit_records
WHERE has_canary AND time >= now() - interval '7 days'
ORDER BY time"
Q[1b_canary_one_prompt]="SELECT replica_id, seq, time, user_id, tenant, session, request_id, rules
FROM audit_records
WHERE has_canary AND time >= now() - interval '7 days' AND rules @> ARRAY['canary.support_bot']
ORDER BY time"
Q[2_flagged_per_user]="SELECT user_id, count(*) AS flagged, min(time) AS first, max(time) AS last
FROM audit_records
WHERE flagged AND time >= now() - interval '1 hour'
GROUP BY user_id ORDER BY flagged DESC LIMIT 20"
Q[2b_one_user]="SELECT seq, time, kind, event, rules, flagged
FROM audit_records
WHERE user_id = 'user-42' AND time >= now() - interval '1 hour' ORDER BY time"
Q[3_one_session]="SELECT replica_id, seq, time, kind, event, line
FROM audit_records WHERE session = 'sha256:' || '$SESSION' ORDER BY time"

declare -A MS ROWSOUT INDEX
for name in $(printf '%s\n' "${!Q[@]}" | sort); do
    psql -X -tA -d "$DB" -c "EXPLAIN (ANALYZE, BUFFERS) ${Q[$name]}" >/dev/null # first run: caches
    plan=$(psql -X -tA -d "$DB" -c "EXPLAIN (ANALYZE, BUFFERS) ${Q[$name]}")
    echo
    echo "== $name"
    echo "${Q[$name]}"
    echo "$plan"
    MS[$name]=$(grep -oP 'Execution Time: \K[0-9.]+' <<<"$plan")
    ROWSOUT[$name]=$(head -1 <<<"$plan" | grep -oP 'actual time=[0-9.]+\.\.[0-9.]+ rows=\K[0-9]+' || true)
    INDEX[$name]=$(grep -oP '(Index Only Scan using|Index Scan using|Bitmap Index Scan on) \K[a-z_]+' <<<"$plan" | sort -u | paste -sd, - || true)
    [[ -n ${INDEX[$name]} ]] || INDEX[$name]="(none: $(grep -oP '(Seq Scan|Parallel Seq Scan)' <<<"$plan" | head -1))"
done

echo
echo "## Investigation queries on $ROWS audit_records ($TABLE table, $SIZE with indexes)"
echo
printf 'load %.0f s, index build %.0f s, VACUUM ANALYZE %.0f s\n\n' "$t_load" "$t_index" "$t_vacuum"
echo "| query | index | rows | time (warm) |"
echo "|---|---|---|---|"
for name in $(printf '%s\n' "${!Q[@]}" | sort); do
    echo "| $name | ${INDEX[$name]} | ${ROWSOUT[$name]} | ${MS[$name]} ms |"
done
echo
echo "index sizes:"
echo "$IXSIZES"
