#!/usr/bin/env bash
# Load test: firebreak (policies/example.toml: every inspection on) against a direct connection, a bare
# hyper proxy (the transport floor, examples/bare_proxy) and
# nginx proxy_pass (when nginx is available) to the same fast local upstream, in one run; then 1,000
# concurrent slow streams through firebreak while its RSS is sampled. See benches/README.md.
#
#   bash benches/load/run.sh
#
# Knobs (environment): DURATION (seconds per run, default 8), ROUNDS (default 3), CONNS (default 32),
# THREADS (wrk threads, default 1), SLOW_STREAMS (default 1000; 0 skips the memory test),
# UPSTREAM (`nginx`, the default: an nginx serving fixed bodies, a 721-byte chat.completion and 20
# chunk events + [DONE] in one body; `fake`: examples/fake_provider, one body frame per event, the
# setup before issue 15), NGINX_WORKERS (the baseline nginx's worker_processes, default auto),
# NGINX_JSON_BUFFERING (on|off, default off: the baseline proxies JSON unbuffered, as SSE),
# FIREBREAK_BIN_BEFORE (a second firebreak binary measured in the same run, as target `before`),
# SLOW_SECS (default 15), NO_NGINX=1 (skip the nginx baseline), NO_FLOOR=1 (skip the `floor` target: examples/bare_proxy, the hyper + tokio transport alone), NO_INSTALL=1 (never apt-get),
# FIREBREAK_BIN (a firebreak binary to measure instead of this tree's), NO_BUILD=1 (use the binaries
# already in target/release), TIME_LIMIT (default 1200 s),
# MODES (default "json sse mcp json_paced sse_paced mcp_paced"; a `_paced` mode is the same request
# with each connection waiting PACE_MS (default 10) between a response and its next request, so no
# target is saturated and the latency overhead is the proxy's own, not queueing behind a full CPU),
# EXTRA_POLICY (TOML appended to the derived policy, e.g. a trigger override).
# Prints a Markdown table; writes benches/load/out/results.json. Everything listens on 127.0.0.1 only,
# and everything started here is stopped on exit. The whole run is bounded (see TIME_LIMIT).
set -euo pipefail

# Bounded: the whole run (build included) is stopped after TIME_LIMIT seconds; the EXIT trap below then
# stops everything it started.
if [[ -z ${FIREBREAK_LOAD_INNER:-} ]]; then
    FIREBREAK_LOAD_INNER=1 exec timeout --foreground -s TERM -k 30 "${TIME_LIMIT:-1200}" bash "$0" "$@"
fi

cd "$(dirname "$0")/../.."
ROOT=$PWD
HERE=$ROOT/benches/load
OUT=$HERE/out
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
UPSTREAM=${UPSTREAM:-nginx}
NGINX_WORKERS=${NGINX_WORKERS:-auto}
NGINX_JSON_BUFFERING=${NGINX_JSON_BUFFERING:-off}
SLOW_STREAMS=${SLOW_STREAMS:-1000}
SLOW_SECS=${SLOW_SECS:-15}
PACE_MS=${PACE_MS:-10}
PROVIDER_KEY=sk-bench-provider-not-a-real-key
# The SHA-256 of this key is in policies/example.toml (role `engineer`): a known test key.
CLIENT_KEY=example-key-platform

log() { printf '>> %s\n' "$*" >&2; }
die() { printf 'load test: %s\n' "$*" >&2; exit 1; }

mkdir -p "$OUT"
# 1,000 streams need ~3,000 descriptors (client, firebreak both sides, upstream).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
rm -rf "$OUT"/runs "$OUT"/nginx "$OUT"/*.ready "$OUT"/state.json "$OUT"/state.incidents.json "$OUT"/audit.jsonl \
    "$OUT"/audit.jsonl.head "$OUT"/results.json \
    "$OUT"/before.* "$OUT"/mock
mkdir -p "$OUT"/runs

PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    # The audit trail of a load test is large and of no further use.
    rm -f "$OUT"/audit.jsonl "$OUT"/audit.jsonl.head "$OUT"/before.audit.jsonl "$OUT"/before.audit.jsonl.head
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits for a ready file and prints its content.
wait_ready() {
    local f=$1 pid=$2 what=$3
    for _ in $(seq 300); do
        if [[ -s $f ]]; then cat "$f"; return 0; fi
        kill -0 "$pid" 2>/dev/null || die "$what exited before it was ready (see $OUT/$what.log)"
        sleep 0.1
    done
    die "$what was not ready within 30 s (see $OUT/$what.log)"
}

json_field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# ---------------------------------------------------------------- tools
APT_UPDATED=0
apt_install() {
    [[ ${NO_INSTALL:-0} == 1 ]] && return 1
    command -v apt-get >/dev/null || return 1
    [[ $(id -u) == 0 ]] || return 1
    if [[ $APT_UPDATED == 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}

command -v python3 >/dev/null || die "python3 is needed to summarise the results"
if ! command -v wrk >/dev/null; then
    log "installing wrk (apt-get install -y wrk)"
    apt_install wrk || true
    command -v wrk >/dev/null || die "wrk is not installed and could not be installed (apt-get install -y wrk needs root and Debian's package lists); install it and re-run"
fi
NGINX=""
if [[ ${NO_NGINX:-0} != 1 ]]; then
    if ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
        log "installing nginx for the baseline (optional)"
        apt_install nginx-light || apt_install nginx || true
    fi
    NGINX=$(command -v nginx || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true)
    [[ -n $NGINX ]] || log "nginx is not available: the nginx baseline is skipped (firebreak is compared with the direct connection only)"
fi
NGINX_BASELINE=1
[[ ${NO_NGINX:-0} == 1 ]] && NGINX_BASELINE=0
if [[ $UPSTREAM == nginx && -z $NGINX ]]; then
    NGINX=$(command -v nginx || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true)
    [[ -n $NGINX ]] || { log "nginx is not available: the upstream is examples/fake_provider"; UPSTREAM=fake; }
fi

# ---------------------------------------------------------------- build
if [[ ${NO_BUILD:-0} != 1 ]]; then
    log "building release binaries (firebreak, examples/fake_provider)"
    cargo build --release --bin firebreak --example fake_provider --example bare_proxy >&2 || die "release build failed"
fi
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
# FIREBREAK_BIN=path measures another firebreak build (e.g. an older revision) against the same run.
FIREBREAK=${FIREBREAK_BIN:-$TARGET/release/firebreak}
PROVIDER=$TARGET/release/examples/fake_provider
[[ -x $FIREBREAK && -x $PROVIDER ]] || die "release binaries not found under $TARGET/release"
FLOOR_BIN=$TARGET/release/examples/bare_proxy
[[ ${NO_FLOOR:-0} == 1 || -x $FLOOR_BIN ]] || die "$FLOOR_BIN not found (build it: cargo build --release --example bare_proxy; or NO_FLOOR=1)"
BEFORE=${FIREBREAK_BIN_BEFORE:-}
[[ -z $BEFORE || -x $BEFORE ]] || die "FIREBREAK_BIN_BEFORE=$BEFORE is not an executable"

# ---------------------------------------------------------------- start
"$PROVIDER" --listen 127.0.0.1:0 --ready-file "$OUT/provider.ready" --threads 1 >"$OUT/provider.log" 2>&1 &
PIDS+=($!)
PROVIDER_PID=${PIDS[-1]}
UP_ADDR=$(wait_ready "$OUT/provider.ready" "${PIDS[-1]}" provider | json_field addr)
FAKE_ADDR=$UP_ADDR
log "fake provider on $UP_ADDR"

# ngx_started PID PORT: waits until an nginx listens on PORT.
ngx_started() {
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
        kill -0 "$1" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
USER_LINE=""
[[ $(id -u) == 0 ]] && USER_LINE="user root;"
# UPSTREAM=nginx: an nginx mock upstream answering with fixed bodies (benches/load/reply_*: a 721-byte
# chat.completion, 20 chunk events and [DONE] in one body, the MCP result), chosen by the Accept header;
# a slow stream (Accept `text/event-stream+slow`, the memory test) is passed through to the fake
# provider, which paces its events. The bodies are static files (one is longer than an nginx config
# string may be): a POST to a static file is a 405, which `error_page` turns into the file, with 200.
if [[ $UPSTREAM == nginx ]]; then
    MK=$OUT/mock
    mkdir -p "$MK"/tmp
    MOCK_PORT=$(free_port)
    cat >"$MK/nginx.conf" <<EOF
# Mock upstream: fixed bodies.
$USER_LINE
worker_processes 1;
daemon off;
pid $MK/nginx.pid;
error_log $MK/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $MK/tmp/body;
    proxy_temp_path $MK/tmp/proxy;
    fastcgi_temp_path $MK/tmp/fastcgi;
    uwsgi_temp_path $MK/tmp/uwsgi;
    scgi_temp_path $MK/tmp/scgi;
    server {
        listen 127.0.0.1:$MOCK_PORT;
        open_file_cache max=16 inactive=1h; open_file_cache_valid 1h;
        location = /v1/chat/completions {
            if (\$http_accept = "text/event-stream+slow") { rewrite ^ /slow last; }
            if (\$http_accept ~ "event-stream") { rewrite ^ /reply_chat.sse last; }
            rewrite ^ /reply_chat.json last;
        }
        location = /mcp { rewrite ^ /reply_mcp.json last; }
        location ~ ^/reply_ {
            internal;
            root $HERE;
            types { application/json json; text/event-stream sse; }
            error_page 405 =200 \$uri;
        }
        location = /slow { internal; proxy_pass http://$FAKE_ADDR/v1/chat/completions; proxy_buffering off; }
    }
}
EOF
    "$NGINX" -p "$MK" -c "$MK/nginx.conf" >"$OUT/mock.log" 2>&1 &
    PIDS+=($!)
    PROVIDER_PID=${PIDS[-1]}
    ngx_started "$PROVIDER_PID" "$MOCK_PORT" || die "the nginx mock upstream did not start (see $OUT/mock.log, $MK/error.log)"
    UP_ADDR=127.0.0.1:$MOCK_PORT
    log "nginx mock upstream on $UP_ADDR"
fi

# The example policy, unchanged but for: both providers point at the fake one, the normal level's rate
# limit is out of the way (it is still checked on every request) and 1,000 slow streams fit under the
# concurrency limit and the user's `max_in_flight`. Redaction, prompt fragments, canaries, egress, injection and tools stay as shipped.
python3 - "$ROOT/policies/example.toml" "$OUT/policy.toml" "$UP_ADDR" <<'PY'
import os, re, sys
src, dst, addr = sys.argv[1:]
t = open(src).read()
n = 0
for host in ("https://api.openai.com", "https://api.anthropic.com"):
    t, k = re.subn(r'(?m)^base_url = "%s"$' % re.escape(host), 'base_url = "http://%s"' % addr, t)
    n += k
# The MCP server too: the fake provider answers tools/call at /mcp.
t, k3 = re.subn(r'(?m)^url = "http://127\.0\.0\.1:3001/mcp"$', 'url = "http://%s/mcp"' % addr, t)
n += k3 - 1
t, k1 = re.subn(r'(?m)^(\[levels\.normal\]\nrequests_per_minute = )\d+$', r'\g<1>1000000000', t)
# One key drives every connection: its user's in-flight share must fit the slow streams too.
t, k4 = re.subn(r'(?m)^(\[levels\.normal\]\nrequests_per_minute = \d+\nmax_in_flight = )\d+$', r'\g<1>4096', t)
t, k2 = re.subn(r'(?m)^max_concurrent_requests = \d+$', 'max_concurrent_requests = 4096', t)
if (n, k1, k2, k4) != (2, 1, 1, 1):
    sys.exit("policies/example.toml changed shape: cannot derive the load-test policy (%d, %d, %d, %d)" % (n, k1, k2, k4))
extra = os.environ.get("EXTRA_POLICY", "")
open(dst, "w").write(t + ("\n# EXTRA_POLICY\n" + extra + "\n" if extra else ""))
PY
# start_firebreak BINARY NAME: sets START_PID and START_ADDR (state and audit files named after NAME).
start_firebreak() {
    local audit=$OUT/audit.jsonl state=$OUT/state.json
    [[ $2 == firebreak ]] || audit=$OUT/$2.audit.jsonl state=$OUT/$2.state.json
    OPENAI_API_KEY=$PROVIDER_KEY ANTHROPIC_API_KEY=$PROVIDER_KEY FIREBREAK_ADMIN_TOKEN=bench-admin-token-$$ \
        "$1" serve --policy "$OUT/policy.toml" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        --state-file "$state" --audit-file "$audit" --ready-file "$OUT/$2.ready" >"$OUT/$2.log" 2>&1 &
    PIDS+=($!)
    START_PID=${PIDS[-1]}
    START_ADDR=$(wait_ready "$OUT/$2.ready" "$START_PID" "$2" | json_field proxy)
    log "$2 ($1) on $START_ADDR (pid $START_PID)"
}
start_firebreak "$FIREBREAK" firebreak
FB_PID=$START_PID FB_ADDR=$START_ADDR
BF_PID="" BF_ADDR=""
if [[ -n $BEFORE ]]; then
    start_firebreak "$BEFORE" before
    BF_PID=$START_PID BF_ADDR=$START_ADDR
fi

# The transport floor: examples/bare_proxy (hyper + tokio shards, nothing else) to the same upstream.
FL_PID="" FL_ADDR=""
if [[ ${NO_FLOOR:-0} != 1 ]]; then
    "$FLOOR_BIN" --listen 127.0.0.1:0 --upstream "$UP_ADDR" --ready-file "$OUT/floor.ready" >"$OUT/floor.log" 2>&1 &
    PIDS+=($!)
    FL_PID=${PIDS[-1]}
    FL_ADDR=$(wait_ready "$OUT/floor.ready" "$FL_PID" floor | json_field addr)
    log "floor (bare hyper proxy) on $FL_ADDR (pid $FL_PID)"
fi

NGINX_PID="" NG_PORT="" NG_STREAM_PORT=""
if [[ -n $NGINX && $NGINX_BASELINE == 1 ]]; then
    NG=$OUT/nginx
    mkdir -p "$NG"/tmp
    NG_PORT=$(free_port)
    NG_STREAM_PORT=$(free_port)
    proxy_common="proxy_pass http://provider; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Authorization \"Bearer $PROVIDER_KEY\";"
    cat >"$NG/nginx.conf" <<EOF
# Baseline: a plain reverse proxy to the same upstream, with upstream keepalive.
$USER_LINE
worker_processes $NGINX_WORKERS;
daemon off;
pid $NG/nginx.pid;
error_log $NG/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $NG/tmp/body;
    proxy_temp_path $NG/tmp/proxy;
    fastcgi_temp_path $NG/tmp/fastcgi;
    uwsgi_temp_path $NG/tmp/uwsgi;
    scgi_temp_path $NG/tmp/scgi;
    upstream provider { server $UP_ADDR; keepalive 64; }
    # JSON: unbuffered by default, as SSE (NGINX_JSON_BUFFERING=on: nginx's default, buffered).
    server { listen 127.0.0.1:$NG_PORT; location / { $proxy_common proxy_buffering $NGINX_JSON_BUFFERING; } }
    # SSE: buffering off, as an AI proxy must stream.
    server { listen 127.0.0.1:$NG_STREAM_PORT; location / { $proxy_common proxy_buffering off; } }
}
EOF
    "$NGINX" -p "$NG" -c "$NG/nginx.conf" >"$OUT/nginx.log" 2>&1 &
    PIDS+=($!)
    NGINX_PID=${PIDS[-1]}
    if ngx_started "$NGINX_PID" "$NG_STREAM_PORT"; then
        log "nginx on 127.0.0.1:$NG_PORT (JSON) and 127.0.0.1:$NG_STREAM_PORT (SSE)"
    else
        log "nginx did not start (see $OUT/nginx.log, $NG/error.log): baseline skipped"
        NGINX_PID=""
    fi
fi

# ---------------------------------------------------------------- modes
# One row per mode: its request body (body_of), what a good answer contains (the sanity check) and,
# for nginx, which server block serves it (url_of).
read -ra MODES <<< "${MODES:-json sse mcp json_paced sse_paced mcp_paced}"
# mcp: a JSON-RPC `tools/call` of `echo` on the MCP server `everything` (POST /mcp/everything on
# firebreak: role allowlist, argument constraints and egress on the call, redaction and injection
# signatures on the result; POST /mcp on the fake provider and through nginx).

url_of() { # target mode
    set -- "$1" "${2%_paced}"
    case $1 in
        direct) [[ $2 == mcp ]] && echo "http://$UP_ADDR/mcp" || echo "http://$UP_ADDR/v1/chat/completions" ;;
        firebreak) [[ $2 == mcp ]] && echo "http://$FB_ADDR/mcp/everything" || echo "http://$FB_ADDR/v1/chat/completions" ;;
        before) [[ $2 == mcp ]] && echo "http://$BF_ADDR/mcp/everything" || echo "http://$BF_ADDR/v1/chat/completions" ;;
        floor) [[ $2 == mcp ]] && echo "http://$FL_ADDR/mcp" || echo "http://$FL_ADDR/v1/chat/completions" ;;
        nginx) case $2 in
                   sse) echo "http://127.0.0.1:$NG_STREAM_PORT/v1/chat/completions" ;;
                   mcp) echo "http://127.0.0.1:$NG_PORT/mcp" ;;
                   *) echo "http://127.0.0.1:$NG_PORT/v1/chat/completions" ;;
               esac ;;
    esac
}
auth_of() { [[ $1 == firebreak || $1 == before ]] && echo "Bearer $CLIENT_KEY" || echo "Bearer $PROVIDER_KEY"; }
# The nginx mock upstream picks its body by the Accept header (firebreak forwards it).
accept_of() { [[ ${1%_paced} == sse ]] && echo "text/event-stream" || echo "application/json"; }
body_of() {
    case ${1%_paced} in
        sse) echo "$HERE/chat_stream.json" ;;
        mcp) echo "$HERE/mcp_call.json" ;;
        *) echo "$HERE/chat.json" ;;
    esac
}

# ---------------------------------------------------------------- sanity
check() {
    local name=$1 url=$2 auth=$3 body=$4 expect=$5 accept=$6 out
    out=$(curl -sS --max-time 5 -H "Authorization: $auth" -H 'Content-Type: application/json' -H "Accept: $accept" --data-binary "@$body" -w '\n%{http_code}' "$url") \
        || die "$name: request failed"
    [[ ${out##*$'\n'} == 200 ]] || die "$name: HTTP ${out##*$'\n'}: ${out%$'\n'*}"
    [[ $out == *"$expect"* ]] || die "$name: unexpected body: ${out:0:300}"
}
command -v curl >/dev/null || die "curl is needed for the sanity checks"
for m in "${MODES[@]}"; do
    [[ $m == *_paced ]] && continue
    expect='"chat.completion"'
    [[ $m == sse ]] && expect='[DONE]'
    [[ $m == mcp ]] && expect='Echo: the gateway'
    for t in direct firebreak ${BF_PID:+before} ${FL_PID:+floor} ${NGINX_PID:+nginx}; do
        check "$t $m" "$(url_of "$t" "$m")" "$(auth_of "$t")" "$(body_of "$m")" "$expect" "$(accept_of "$m")"
    done
done
log "sanity checks passed"

# ---------------------------------------------------------------- runs
TARGETS=(direct firebreak)
[[ -n $BF_PID ]] && TARGETS+=(before)
[[ -n $FL_PID ]] && TARGETS+=(floor)
[[ -n $NGINX_PID ]] && TARGETS+=(nginx)

# CPU time (user + system, clock ticks) of processes and their threads; nginx counts its workers.
ticks() {
    local t=0 p v
    for p in "$@"; do
        v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
        t=$((t + v))
    done
    echo "$t"
}
# A process and its children (nginx: master and workers, of the baseline and of the mock upstream).
tree() { echo "$1 $(pgrep -P "$1" | tr '\n' ' ')"; }
proxy_pids() {
    case $1 in
        firebreak) echo "$FB_PID" ;;
        before) echo "$BF_PID" ;;
        floor) echo "$FL_PID" ;;
        nginx) tree "$NGINX_PID" ;;
    esac
}
HZ=$(getconf CLK_TCK)

# run ROUND MODE TARGET SECONDS
run() {
    local round=$1 mode=$2 target=$3 secs=$4 f
    f=$OUT/runs/$round-$mode-$target.txt
    local pace=0
    [[ $mode == *_paced ]] && pace=$PACE_MS
    local up0 px0 up1 px1
    # shellcheck disable=SC2046
    up0=$(ticks $(tree "$PROVIDER_PID"))
    # shellcheck disable=SC2046
    px0=$(ticks $(proxy_pids "$target"))
    # wrk's own CPU time comes from getrusage of its parent (this python).
    BODY_FILE=$(body_of "$mode") AUTH=$(auth_of "$target") ACCEPT=$(accept_of "$mode") PACE_MS=$pace \
        python3 -c 'import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:]).returncode
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print("WRKCPU %.3f" % (r.ru_utime + r.ru_stime))
sys.exit(rc)' timeout $((secs + 30)) wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" --timeout 5s --latency -s "$HERE/post.lua" "$(url_of "$target" "$mode")" >"$f" 2>&1 \
        || die "wrk failed for $target $mode (see $f)"
    # shellcheck disable=SC2046
    up1=$(ticks $(tree "$PROVIDER_PID"))
    # shellcheck disable=SC2046
    px1=$(ticks $(proxy_pids "$target"))
    local line cpu
    line=$(sed -n 's/^WRKJSON //p' "$f")
    [[ -n $line ]] || die "no summary from wrk for $target $mode (see $f)"
    cpu=$(printf '{"wrk_s":%s,"upstream_s":%s,"proxy_s":%s}' "$(sed -n 's/^WRKCPU //p' "$f")" \
        "$(python3 -c "print(($up1 - $up0) / $HZ)")" "$(python3 -c "print(($px1 - $px0) / $HZ)")")
    [[ $round == warmup ]] && return 0
    printf '{"round":%s,"mode":"%s","target":"%s","wrk":%s,"cpu":%s}\n' "$round" "$mode" "$target" "$line" "$cpu" >>"$OUT/runs.jsonl"
    python3 - "$line" "$round" "$mode" "$target" "$cpu" <<'PY' >&2
import json, sys
w, c = json.loads(sys.argv[1]), json.loads(sys.argv[5])
n = max(w["requests"], 1)
print("   %3s %-10s %-9s %9.0f req/s  p50 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  errors %d  CPU/request: wrk %.1f us, upstream %.1f us, proxy %.1f us"
      % (sys.argv[2], sys.argv[3], sys.argv[4], w["rps"], w["p50_us"] / 1000, w["p99_us"] / 1000, w["p999_us"] / 1000,
         sum(w["errors"].values()), c["wrk_s"] * 1e6 / n, c["upstream_s"] * 1e6 / n, c["proxy_s"] * 1e6 / n))
PY
}

rm -f "$OUT/runs.jsonl"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date +%s)
log "warm-up (2 s per target and mode)"
for mode in "${MODES[@]}"; do for t in "${TARGETS[@]}"; do run warmup "$mode" "$t" 2; done; done
log "measuring: $ROUNDS rounds x {${MODES[*]}} x {${TARGETS[*]}}, ${DURATION} s each, $CONNS connections, $THREADS wrk threads"
n=${#TARGETS[@]}
for round in $(seq "$ROUNDS"); do
    for mode in "${MODES[@]}"; do
        # Rotate the order every round so no target always runs first (A/B/C, B/C/A, …).
        for i in $(seq 0 $((n - 1))); do
            run "$round" "$mode" "${TARGETS[$(((i + round - 1) % n))]}" "$DURATION"
        done
    done
done
ELAPSED=$(($(date +%s) - START))
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- memory
vm() { sed -n "s/^$2:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$1/status" 2>/dev/null || true; }
FB_HWM=$(vm "$FB_PID" VmHWM)
FB_RSS=$(vm "$FB_PID" VmRSS)
NG_HWM=0
if [[ -n $NGINX_PID ]]; then
    for p in $NGINX_PID $(pgrep -P "$NGINX_PID" || true); do
        v=$(vm "$p" VmHWM)
        NG_HWM=$((NG_HWM + ${v:-0}))
    done
fi
kill -0 "$FB_PID" 2>/dev/null || die "firebreak died during the load test (see $OUT/firebreak.log)"
AUDIT_BYTES=$(stat -c %s "$OUT/audit.jsonl" 2>/dev/null || echo 0)

# ---------------------------------------------------------------- many slow streams
# SLOW_STREAMS connections each keep one slow stream open through firebreak (events 250 ms apart, ~9 s
# per stream, so every connection has a stream in flight all the time); firebreak's RSS is sampled
# every 0.25 s. RSS_BEFORE is after the throughput runs (allocator high-water marks included).
SLOW_RSS_BEFORE=$(vm "$FB_PID" VmRSS) SLOW_RSS_MAX=0 SLOW_LINE=""
if ((SLOW_STREAMS > 0)); then
    log "memory: $SLOW_STREAMS concurrent slow streams through firebreak for ${SLOW_SECS} s"
    python3 - "$HERE/chat_stream.json" "$OUT/slow_stream.json" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))
b["fake_delay_ms"] = 250
json.dump(b, open(sys.argv[2], "w"), separators=(",", ":"))
PY
    BODY_FILE=$OUT/slow_stream.json AUTH="Bearer $CLIENT_KEY" ACCEPT="text/event-stream+slow" \
        timeout $((SLOW_SECS + 40)) wrk -t"$THREADS" -c"$SLOW_STREAMS" -d"${SLOW_SECS}s" --timeout 30s --latency \
        -s "$HERE/post.lua" "http://$FB_ADDR/v1/chat/completions" >"$OUT/runs/slow_streams.txt" 2>&1 &
    WRK_SLOW=$!
    PIDS+=($WRK_SLOW)
    while kill -0 "$WRK_SLOW" 2>/dev/null; do
        r=$(vm "$FB_PID" VmRSS)
        ((${r:-0} > SLOW_RSS_MAX)) && SLOW_RSS_MAX=$r
        sleep 0.25
    done
    wait "$WRK_SLOW" || die "wrk failed for the slow streams (see $OUT/runs/slow_streams.txt)"
    SLOW_LINE=$(sed -n 's/^WRKJSON //p' "$OUT/runs/slow_streams.txt")
    kill -0 "$FB_PID" 2>/dev/null || die "firebreak died during the slow streams (see $OUT/firebreak.log)"
fi
FB_HWM_END=$(vm "$FB_PID" VmHWM)

# ---------------------------------------------------------------- report
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
export CPU NPROC=$(nproc) KERNEL=$(uname -r) LOAD_BEFORE LOAD_AFTER ELAPSED FB_HWM FB_RSS NG_HWM AUDIT_BYTES \
    SLOW_STREAMS SLOW_SECS SLOW_RSS_BEFORE SLOW_RSS_MAX SLOW_LINE FB_HWM_END RUSTC=$(rustc -V) \
    DURATION ROUNDS CONNS THREADS PACE_MS BEFORE UPSTREAM NGINX_WORKERS NGINX_JSON_BUFFERING REV=$([[ -n ${FIREBREAK_BIN:-} ]] && echo "$FIREBREAK_BIN" || git describe --always --dirty 2>/dev/null || echo unknown) \
    WRK_VERSION=$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2) NGINX_VERSION=$([[ -n $NGINX ]] && "$NGINX" -v 2>&1 | sed 's/.*: //' || echo "")
python3 - "$OUT/runs.jsonl" "$OUT/results.json" <<'PY'
import json, os, statistics, sys, datetime
runs = [json.loads(l) for l in open(sys.argv[1])]
targets = [t for t in ("direct", "firebreak", "before", "floor", "nginx") if any(r["target"] == t for r in runs)]
med = statistics.median
by = {}
for r in runs:
    by.setdefault((r["mode"], r["target"]), []).append(r)
def per_round(mode, t, f):
    return {r["round"]: f(r["wrk"]) for r in by.get((mode, t), [])}
res = {"machine": {"nproc": int(os.environ["NPROC"]), "cpu": os.environ["CPU"], "kernel": os.environ["KERNEL"],
                   "loadavg_before": os.environ["LOAD_BEFORE"], "loadavg_after": os.environ["LOAD_AFTER"],
                   "rustc": os.environ["RUSTC"]},
       "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
       "firebreak_rev": os.environ["REV"], "before_bin": os.environ.get("BEFORE") or None,
       "upstream": os.environ["UPSTREAM"], "nginx_workers": os.environ["NGINX_WORKERS"],
       "nginx_json_buffering": os.environ["NGINX_JSON_BUFFERING"], "wrk": os.environ["WRK_VERSION"], "nginx": os.environ["NGINX_VERSION"] or None,
       "settings": {"duration_s": int(os.environ["DURATION"]), "rounds": int(os.environ["ROUNDS"]),
                    "connections": int(os.environ["CONNS"]), "wrk_threads": int(os.environ["THREADS"]), "pace_ms": int(os.environ["PACE_MS"]), "elapsed_s": int(os.environ["ELAPSED"])},
       "memory_kib": {"firebreak_vmhwm": int(os.environ["FB_HWM"] or 0), "firebreak_vmrss_end": int(os.environ["FB_RSS"] or 0),
                      "nginx_vmhwm_all_processes": int(os.environ["NG_HWM"] or 0) or None},
       "audit_bytes_written": int(os.environ["AUDIT_BYTES"]),
       "slow_streams": None if int(os.environ["SLOW_STREAMS"]) == 0 else {
           "concurrent": int(os.environ["SLOW_STREAMS"]), "seconds": int(os.environ["SLOW_SECS"]), "event_interval_ms": 250,
           "firebreak_rss_kib_before": int(os.environ["SLOW_RSS_BEFORE"] or 0),
           "firebreak_rss_kib_max_sampled": int(os.environ["SLOW_RSS_MAX"] or 0),
           "firebreak_vmhwm_kib_after": int(os.environ["FB_HWM_END"] or 0),
           "wrk": json.loads(os.environ["SLOW_LINE"]) if os.environ["SLOW_LINE"] else None},
       "modes": {}, "runs": runs}
rows = []
for mode in dict.fromkeys(r["mode"] for r in runs):
    m = {}
    for t in targets:
        rs = [r["wrk"] for r in by.get((mode, t), [])]
        if not rs:
            continue
        m[t] = {"rps_median": round(med(w["rps"] for w in rs), 1), "p50_ms_median": round(med(w["p50_us"] for w in rs) / 1000, 3),
                "p99_ms_median": round(med(w["p99_us"] for w in rs) / 1000, 3),
                "p999_ms_median": round(med(w["p999_us"] for w in rs) / 1000, 3), "errors": sum(sum(w["errors"].values()) for w in rs),
                "rps_runs": [round(w["rps"], 1) for w in rs],
                "cpu_us_per_request_median": {k: round(med(r["cpu"][k + "_s"] * 1e6 / max(r["wrk"]["requests"], 1)
                                                        for r in by.get((mode, t), [])), 1)
                                              for k in ("wrk", "upstream", "proxy")}}
    # Ratios are taken round by round (same conditions), then the median over rounds.
    def ratio(a, b, f):
        ra, rb = per_round(mode, a, f), per_round(mode, b, f)
        xs = [ra[k] / rb[k] for k in ra if k in rb and rb[k]]
        return round(med(xs), 3) if xs else None
    def diff_ms(a, b, f):
        ra, rb = per_round(mode, a, f), per_round(mode, b, f)
        xs = [(ra[k] - rb[k]) / 1000 for k in ra if k in rb]
        return round(med(xs), 3) if xs else None
    cmp = {"firebreak_over_direct_rps": ratio("firebreak", "direct", lambda w: w["rps"]),
           "firebreak_p50_overhead_ms_vs_direct": diff_ms("firebreak", "direct", lambda w: w["p50_us"]),
           "firebreak_p99_overhead_ms_vs_direct": diff_ms("firebreak", "direct", lambda w: w["p99_us"]),
           "firebreak_p999_overhead_ms_vs_direct": diff_ms("firebreak", "direct", lambda w: w["p999_us"])}
    def cpu_ratio(a, b):
        def per(t):
            return {r["round"]: r["cpu"]["proxy_s"] / max(r["wrk"]["requests"], 1) for r in by.get((mode, t), [])}
        ra, rb = per(a), per(b)
        xs = [ra[k] / rb[k] for k in ra if k in rb and rb[k]]
        return round(med(xs), 3) if xs else None
    if "before" in targets:
        cmp.update({"firebreak_over_before_rps": ratio("firebreak", "before", lambda w: w["rps"]),
                    "firebreak_cpu_over_before": cpu_ratio("firebreak", "before"),
                    "before_p99_overhead_ms_vs_direct": diff_ms("before", "direct", lambda w: w["p99_us"])})
    if "floor" in targets:
        cmp["firebreak_cpu_over_floor"] = cpu_ratio("firebreak", "floor")
    if "nginx" in targets:
        cmp["firebreak_cpu_over_nginx"] = cpu_ratio("firebreak", "nginx")
        if "before" in targets:
            cmp["before_cpu_over_nginx"] = cpu_ratio("before", "nginx")
        if "floor" in targets:
            cmp["floor_cpu_over_nginx"] = cpu_ratio("floor", "nginx")
        cmp.update({"firebreak_over_nginx_rps": ratio("firebreak", "nginx", lambda w: w["rps"]),
                    "nginx_over_direct_rps": ratio("nginx", "direct", lambda w: w["rps"]),
                    "firebreak_p99_overhead_ms_vs_nginx": diff_ms("firebreak", "nginx", lambda w: w["p99_us"]),
                    "nginx_p99_overhead_ms_vs_direct": diff_ms("nginx", "direct", lambda w: w["p99_us"])})
    m["compare"] = cmp
    res["modes"][mode] = m
json.dump(res, open(sys.argv[2], "w"), indent=2)

fmt = lambda x, s="": "n/a" if x is None else f"{x}{s}"
print(f"\n### firebreak load test ({res['when']}, rev {res['firebreak_rev']})\n")
print(f"Machine: {res['machine']['nproc']} cores, {res['machine']['cpu']}, Linux {res['machine']['kernel']}; "
      f"load average before/after: {res['machine']['loadavg_before']} / {res['machine']['loadavg_after']}.  ")
s = res["settings"]
print(f"Upstream: {res['upstream']}; baseline nginx: worker_processes {res['nginx_workers']}, JSON proxy_buffering {res['nginx_json_buffering']}"
      + (f"; before: {res['before_bin']}" if res['before_bin'] else "") + ".  ")
print(f"wrk {s['connections']} connections, {s['wrk_threads']} threads, {s['rounds']} rounds x {s['duration_s']} s per target, order rotated each round; "
      f"medians over rounds; ratios taken within each round. `_paced` modes: {s['pace_ms']} ms between a response and the next request "
      f"on each connection (offered load below every target's capacity: their req/s ratios mean nothing, their latency overheads are the proxy's own).\n")
print("| mode | target | req/s | p50 ms | p99 ms | p99.9 ms | errors |")
print("|---|---|---:|---:|---:|---:|---:|")
for mode, m in res["modes"].items():
    for t in targets:
        if t in m:
            x = m[t]
            print(f"| {mode} | {t} | {x['rps_median']:.0f} | {x['p50_ms_median']:.2f} | {x['p99_ms_median']:.2f} | {x['p999_ms_median']:.2f} | {x['errors']} |")
print("\n| mode | firebreak/nginx req/s | firebreak/direct req/s | nginx/direct req/s | firebreak p99 overhead vs direct | firebreak p99.9 overhead vs direct | firebreak p99 overhead vs nginx |")
print("|---|---:|---:|---:|---:|---:|---:|")
for mode, m in res["modes"].items():
    c = m["compare"]
    print(f"| {mode} | **{fmt(c.get('firebreak_over_nginx_rps'))}** | {fmt(c['firebreak_over_direct_rps'])} | {fmt(c.get('nginx_over_direct_rps'))} | "
          f"**{fmt(c['firebreak_p99_overhead_ms_vs_direct'], ' ms')}** | {fmt(c['firebreak_p999_overhead_ms_vs_direct'], ' ms')} | {fmt(c.get('firebreak_p99_overhead_ms_vs_nginx'), ' ms')} |")
print("\nProxy CPU per request as a multiple of nginx's (taken within each round, then the median; the issue-15 targets:"
      " <= 1.8x for JSON, <= 2x for SSE):\n")
print("| mode | firebreak CPU / nginx CPU | before CPU / nginx CPU | firebreak CPU / before CPU | floor CPU / nginx CPU | firebreak CPU / floor CPU | firebreak/before req/s | before p99 overhead vs direct |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for mode, m in res["modes"].items():
    c = m["compare"]
    print(f"| {mode} | **{fmt(c.get('firebreak_cpu_over_nginx'))}** | {fmt(c.get('before_cpu_over_nginx'))} | {fmt(c.get('firebreak_cpu_over_before'))} | "
          f"{fmt(c.get('floor_cpu_over_nginx'))} | {fmt(c.get('firebreak_cpu_over_floor'))} | "
          f"{fmt(c.get('firebreak_over_before_rps'))} | {fmt(c.get('before_p99_overhead_ms_vs_direct'), ' ms')} |")
print("\nCPU time per request (user + system, median over rounds). Saturated modes: on a machine where everything shares the cores,"
      " throughput follows the sum of the three, and each process runs at its own rate (nginx's CPU per request falls as its rate"
      " rises: fewer wake-ups per request). Paced modes: every target serves the same offered rate, so their CPU per request is"
      " compared at the same operating point.\n")
print("| mode | target | wrk µs | upstream µs | proxy µs | sum µs |")
print("|---|---|---:|---:|---:|---:|")
for mode, m in res["modes"].items():
    for t in targets:
        if t in m:
            c = m[t]["cpu_us_per_request_median"]
            print(f"| {mode} | {t} | {c['wrk']:.1f} | {c['upstream']:.1f} | {c['proxy']:.1f} | {c['wrk'] + c['upstream'] + c['proxy']:.1f} |")
mem = res["memory_kib"]
print(f"\nfirebreak peak RSS (VmHWM): {mem['firebreak_vmhwm'] / 1024:.1f} MiB (RSS at end {mem['firebreak_vmrss_end'] / 1024:.1f} MiB)"
      + (f"; nginx, all processes: {mem['nginx_vmhwm_all_processes'] / 1024:.1f} MiB" if mem["nginx_vmhwm_all_processes"] else "")
      + f". Audit trail written: {res['audit_bytes_written'] / 2**20:.0f} MiB. Measuring took {s['elapsed_s']} s.")
sl = res["slow_streams"]
if sl:
    done = sl["wrk"]["requests"] if sl["wrk"] else 0
    print(f"\n{sl['concurrent']} concurrent slow streams ({sl['event_interval_ms']} ms between events) for {sl['seconds']} s: "
          f"firebreak RSS {sl['firebreak_rss_kib_before'] / 1024:.1f} MiB before, **{sl['firebreak_rss_kib_max_sampled'] / 1024:.1f} MiB** at most "
          f"(sampled every 0.25 s; target < 100 MB); {done} streams completed.")
print(f"\nJSON: benches/load/out/results.json")
errs = sum(m[t]["errors"] for m in res["modes"].values() for t in targets if t in m)
if errs:
    print(f"\nWARNING: {errs} wrk errors (non-2xx, timeouts or socket errors); see benches/load/out/runs/.")
PY
