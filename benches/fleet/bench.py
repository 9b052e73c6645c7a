#!/usr/bin/env python3
"""Fleet-mode bench (docs/design/fleet-mode.md §12, steps 1-5), driven by benches/fleet/run.sh.

Three release replicas A, B, C on a fresh database `fbbench_<pid>` and Redis prefix `fbbench-<pid>`,
in front of examples/fake_provider (JSON) and a slow scripted upstream (streams):

  2. propagation: BATCHES switch batches on A (block/unblock one user, PAUSE_MS apart); each replica's
     `propagation_us` (now - the NOTIFY payload's commit time, one host clock) from its JSON log, or
     `propagation_ms` from its `fleet_applied` audit records; the admin call's own latency; WAIT_ALL
     `?wait=all` round trips;
  3. stream cut: STREAMS slow SSE streams open on each replica, a lockdown POSTed on A, the time from
     the POST's return to each stream's end;
  4. req/s with fleet mode on (replica A) and off (the same policy without [fleet], same upstream and
     key) in the same run, alternating; the Redis round trip of the rate-limit script (EVALSHA with
     redis-benchmark, `redis-cli --latency` as a cross-check).

  5. audit shipping: A's INSERTs held back by a table lock during DURATION s of load, then the
     catch-up rate (records/s) from the first new row to the last; every trail line in the table once.

Prints one Markdown table (and writes OUT/results.json). Standard library only. Everything it starts
is stopped, and the database and the Redis keys are dropped, on exit.
"""

from __future__ import annotations

import atexit
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

BIN, PROVIDER, ROOT, OUT = (Path(a) for a in sys.argv[1:5])
BATCHES = int(os.environ.get("BATCHES", "200"))
PAUSE_MS = int(os.environ.get("PAUSE_MS", "50"))
WAIT_ALL = int(os.environ.get("WAIT_ALL", "20"))
STREAMS = int(os.environ.get("STREAMS", "20"))
DURATION = int(os.environ.get("DURATION", "8"))
ROUNDS = int(os.environ.get("ROUNDS", "2"))
CONNS = int(os.environ.get("CONNS", "16"))
PG_ADMIN_URL = os.environ.get("FIREBREAK_TEST_PG", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS = ("127.0.0.1", "6379")
ADMIN_TOKEN = f"fleet-bench-admin-{os.getpid()}"
CLIENT_KEY = "fb-bench-fleet-client-key-4c1d"
PROVIDER_KEY = "sk-bench-provider-not-a-real-key"
TAG = os.environ.get("BENCH_TAG", "").lower()
DB = f"fbbench_{TAG + '_' if TAG else ''}{os.getpid()}"
PREFIX = f"{TAG + '-' if TAG else ''}fbbench-{os.getpid()}"
LONG_TEXT = " ".join(f"sentence {i} of a slow scripted story for the stream-cut bench." for i in range(60))

PROCS: list[subprocess.Popen] = []


def log(msg: str) -> None:
    print(f">> {msg}", file=sys.stderr, flush=True)


def die(msg: str) -> None:
    print(f"fleet bench: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def psql(sql: str, check: bool = True) -> str:
    out = subprocess.run(["psql", PG_ADMIN_URL, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], capture_output=True, text=True, timeout=60)
    if check and out.returncode != 0:
        die(f"psql {sql!r}: {out.stderr.strip()}")
    return out.stdout


def cleanup() -> None:
    for p in PROCS:
        if p.poll() is None:
            p.terminate()
    for p in PROCS:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
    psql(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)', check=False)
    keys = subprocess.run(["redis-cli", "-h", REDIS[0], "-p", REDIS[1], "--scan", "--pattern", f"{PREFIX}:*"],
                          capture_output=True, text=True).stdout.split()
    for i in range(0, len(keys), 500):
        subprocess.run(["redis-cli", "-h", REDIS[0], "-p", REDIS[1], "DEL", *keys[i:i + 500]], capture_output=True)
    for f in OUT.glob("*/audit.jsonl*"):
        f.unlink(missing_ok=True)


atexit.register(cleanup)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def wait_ready(path: Path, proc: subprocess.Popen, what: str, log_path: Path) -> dict:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if path.exists():
            try:
                return json.loads(path.read_text())
            except ValueError:
                pass
        if proc.poll() is not None:
            die(f"{what} exited before it was ready:\n{log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)
    die(f"{what} not ready within 60 s (see {log_path})")
    return {}


def percentile(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def p50_p99(xs: list[float]) -> str:
    return f"{percentile(xs, 50):.1f} / {percentile(xs, 99):.1f}" if xs else "n/a"


# ---------------------------------------------------------------- processes
class Replica:
    def __init__(self, name: str, fleet: bool, upstream: str) -> None:
        self.name = name
        self.dir = OUT / name
        self.dir.mkdir(parents=True, exist_ok=True)
        for f in self.dir.iterdir():
            f.unlink()
        (self.dir / "policy.toml").write_text(policy(upstream, fleet))
        self.log_path = self.dir / "gateway.log"
        env = dict(os.environ, FIREBREAK_ADMIN_TOKEN=ADMIN_TOKEN, FIREBREAK_LOG="info", FB_BENCH_PROVIDER_KEY=PROVIDER_KEY,
                   FIREBREAK_POSTGRES_URL=PG_ADMIN_URL.rpartition("/")[0] + "/" + DB,
                   FIREBREAK_REDIS_URL=f"redis://{REDIS[0]}:{REDIS[1]}/", FIREBREAK_REPLICA_ID=name)
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--json-logs", "--policy", str(self.dir / "policy.toml"), "--listen", "127.0.0.1:0",
             "--admin-listen", "127.0.0.1:0", "--state-file", str(self.dir / "state.json"),
             "--audit-file", str(self.dir / "audit.jsonl"), "--ready-file", str(self.dir / "ready.json")],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(self.log_path, "wb"))
        PROCS.append(self.proc)
        doc = wait_ready(self.dir / "ready.json", self.proc, f"replica {name}", self.log_path)
        self.proxy, self.admin = doc["proxy"], doc["admin"]

    def call(self, method: str, path: str, body: object | None = None, timeout: float = 15) -> tuple[int, object]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://{self.admin}{path}", data=data, method=method)
        req.add_header("Authorization", f"Bearer {ADMIN_TOKEN}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        try:
            return status, json.loads(raw or b"null")
        except ValueError:
            return status, raw.decode(errors="replace")

    def version(self) -> int:
        status, v = self.call("GET", "/admin/v1/state")
        return v["version"] if status == 200 and isinstance(v, dict) else -1

    def switch(self, actions: list[dict], query: str = "") -> tuple[int, object]:
        return self.call("POST", f"/admin/v1/switches{query}", {"actions": actions, "reason": "fleet bench", "actor": "bench"})


def policy(upstream: str, fleet: bool) -> str:
    import hashlib
    text = f"""
[upstreams.fast]
kind = "openai"
base_url = "http://{upstream}"
credential_env = "FB_BENCH_PROVIDER_KEY"

[upstreams.slow]
kind = "scripted"
chunk_chars = 3
chunk_delay_ms = 20

[[upstreams.slow.replies]]
text = "{LONG_TEXT}"

[[routes]]
api = "openai"
upstream = "slow"
models = ["slow-*"]

[[routes]]
api = "openai"
upstream = "fast"

[[keys]]
id = "bench-key"
sha256 = "{hashlib.sha256(CLIENT_KEY.encode()).hexdigest()}"
tenant = "bench"
user = "bench"
role = "r"

[roles.r]

[levels.normal]
requests_per_minute = 1000000000
max_in_flight = 4096

[limits]
max_concurrent_requests = 4096

[incidents]
auto_contain = false
"""
    if fleet:
        text += f"""
[fleet]
postgres_url_env = "FIREBREAK_POSTGRES_URL"
redis_url_env = "FIREBREAK_REDIS_URL"
redis_prefix = "{PREFIX}"
heartbeat_interval = "500ms"
live_after = "3s"
"""
    return text


def wait_until(pred, secs: float, what: str) -> None:
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    die(f"timed out after {secs} s waiting for {what}")


# ---------------------------------------------------------------- 1. start
OUT.mkdir(parents=True, exist_ok=True)
psql(f'CREATE DATABASE "{DB}"')
prov_ready = OUT / "provider.ready"
prov_ready.unlink(missing_ok=True)
prov = subprocess.Popen([str(PROVIDER), "--listen", "127.0.0.1:0", "--ready-file", str(prov_ready), "--threads", "1"],
                        stdout=subprocess.DEVNULL, stderr=open(OUT / "provider.log", "wb"))
PROCS.append(prov)
UPSTREAM = wait_ready(prov_ready, prov, "fake provider", OUT / "provider.log")["addr"]
log(f"fake provider on {UPSTREAM}; database {DB}, Redis prefix {PREFIX}")
R = [Replica(n, True, UPSTREAM) for n in ("A", "B", "C")]
A = R[0]


def all_live() -> bool:
    status, v = A.call("GET", "/admin/v1/fleet")
    if status == 404:
        die("GET /admin/v1/fleet is missing: this binary has no fleet mode")
    return status == 200 and sum(1 for r in v.get("replicas", []) if r.get("live")) >= 3


wait_until(all_live, 30, "GET /admin/v1/fleet to list A, B, C live")
log("replicas A, B, C live")
results: dict[str, object] = {"batches": BATCHES, "streams_per_replica": STREAMS}

# ---------------------------------------------------------------- 2. propagation
v0 = A.version()
admin_ms: list[float] = []
for i in range(BATCHES):
    action = {"action": "block_user", "user": "bench-target"} if i % 2 == 0 else {"action": "unblock_user", "user": "bench-target"}
    t = time.perf_counter()
    status, body = A.switch([action])
    admin_ms.append((time.perf_counter() - t) * 1000)
    if status != 200:
        die(f"batch {i} refused: {status} {body}")
    time.sleep(PAUSE_MS / 1000)
v1 = v0 + BATCHES
wait_until(lambda: all(r.version() >= v1 for r in R), 30, f"every replica at version {v1}")


def propagation_samples(r: Replica) -> list[float]:
    """propagation in ms for versions v0+1..v1: the JSON log's propagation_us, else the audit's propagation_ms."""
    got: dict[int, float] = {}
    for line in r.log_path.read_text(errors="replace").splitlines():
        if "propagation_us" not in line:
            continue
        try:
            d = json.loads(line)
        except ValueError:
            continue
        f = d.get("fields", d)
        v, us = f.get("version"), f.get("propagation_us")
        if isinstance(v, int) and v0 < v <= v1 and us is not None:
            got[v] = float(us) / 1000
    if not got:
        for line in (r.dir / "audit.jsonl").read_text(errors="replace").splitlines():
            if '"fleet_applied"' not in line:
                continue
            d = json.loads(line)
            v, ms = d.get("version"), d.get("propagation_ms")
            if isinstance(v, int) and v0 < v <= v1 and ms is not None:
                got[v] = float(ms)
    return list(got.values())


prop: dict[str, list[float]] = {r.name: propagation_samples(r) for r in R}
allprop = [x for r in R[1:] for x in prop[r.name]]
wait_ms, wait_complete = [], 0
for i in range(WAIT_ALL):
    action = {"action": "block_user", "user": "bench-wait"} if i % 2 == 0 else {"action": "unblock_user", "user": "bench-wait"}
    t = time.perf_counter()
    status, body = A.switch([action], "?wait=all&timeout=2s")
    wait_ms.append((time.perf_counter() - t) * 1000)
    if status != 200:
        die(f"?wait=all batch refused: {status} {body}")
    wait_complete += 1 if isinstance(body, dict) and body.get("fleet", {}).get("complete") else 0
results["propagation_ms"] = {k: v for k, v in prop.items()}
results["admin_ms"] = admin_ms
results["wait_all_ms"] = wait_ms
log(f"propagation: {len(allprop)} samples on B and C; admin p50 {percentile(admin_ms, 50):.1f} ms")

# ---------------------------------------------------------------- 3. stream cut
ready = threading.Semaphore(0)
go = threading.Event()
ends: dict[tuple[str, int], float] = {}
errors: list[str] = []


def one_stream(r: Replica, i: int) -> None:
    host, port = r.proxy.rsplit(":", 1)
    try:
        c = http.client.HTTPConnection(host, int(port), timeout=30)
        c.request("POST", "/v1/chat/completions",
                  body=json.dumps({"model": "slow-bench", "stream": True, "messages": [{"role": "user", "content": "long"}]}),
                  headers={"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"})
        resp = c.getresponse()
        if resp.status != 200:
            errors.append(f"{r.name}/{i}: HTTP {resp.status}")
            ready.release()
            return
        first = False
        while True:
            chunk = resp.read1(65536)
            if not chunk:
                break
            if not first and b'"content"' in chunk:
                first = True
                ready.release()
        ends[(r.name, i)] = time.perf_counter()
        if not first:
            ready.release()
    except Exception as e:  # noqa: BLE001 (a bench: report and go on)
        errors.append(f"{r.name}/{i}: {e}")
        ready.release()


threads = [threading.Thread(target=one_stream, args=(r, i), daemon=True) for r in R for i in range(STREAMS)]
for t in threads:
    t.start()
for _ in threads:
    if not ready.acquire(timeout=60):
        die("the slow streams did not all start within 60 s")
if errors:
    die(f"streams failed before the lockdown: {errors[:5]}")
status, body = A.switch([{"action": "set_level", "level": "lockdown"}])
t_post = time.perf_counter()
if status != 200:
    die(f"lockdown refused: {status} {body}")
for t in threads:
    t.join(timeout=15)
cut: dict[str, list[float]] = {r.name: [(ends[(r.name, i)] - t_post) * 1000 for i in range(STREAMS) if (r.name, i) in ends] for r in R}
allcut = [x for v in cut.values() for x in v]
missing = len(threads) - len(allcut)
results["stream_cut_ms"] = cut
A.switch([{"action": "set_level", "level": "normal"}])
v2 = A.version()
wait_until(lambda: all(r.version() >= v2 for r in R), 30, "every replica back to normal")
log(f"stream cut: {len(allcut)} streams, p50 {percentile(allcut, 50):.1f} ms; {missing} did not end in 15 s")

# ---------------------------------------------------------------- 4. req/s, fleet on vs off
single = Replica("single", False, UPSTREAM)
post_lua = ROOT / "benches/load/post.lua"
body_file = ROOT / "benches/load/chat.json"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and its reaped threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(target: Replica, secs: int) -> dict:
    cpu0 = cpu_seconds(target.proc.pid)
    env = dict(os.environ, BODY_FILE=str(body_file), AUTH=f"Bearer {CLIENT_KEY}", ACCEPT="application/json", PACE_MS="0")
    out = subprocess.run(["wrk", "-t1", f"-c{CONNS}", f"-d{secs}s", "--timeout", "5s", "-s", str(post_lua),
                          f"http://{target.proxy}/v1/chat/completions"], capture_output=True, text=True, env=env, timeout=secs + 60)
    m = re.search(r"^WRKJSON (.*)$", out.stdout, re.M)
    if not m:
        die(f"no summary from wrk against {target.name}: {out.stdout[-500:]} {out.stderr[-500:]}")
    w = json.loads(m.group(1))
    if sum(w["errors"].values()):
        log(f"wrk against {target.name}: errors {w['errors']}")
    # The gateway process's own CPU per request (what a replica costs when PostgreSQL and Redis run
    # elsewhere; on this one host they also take from the same cores).
    w["cpu_us_per_req"] = (cpu_seconds(target.proc.pid) - cpu0) * 1e6 / max(1, w["requests"])
    return w


for t in (A, single):
    wrk(t, 2)  # warm-up
runs: dict[str, list[dict]] = {"fleet": [], "single": []}
for _ in range(ROUNDS):
    runs["fleet"].append(wrk(A, DURATION))
    runs["single"].append(wrk(single, DURATION))
results["wrk"] = runs


def med(name: str, key: str) -> float:
    return statistics.median(w[key] for w in runs[name])


rps_on, rps_off = med("fleet", "rps"), med("single", "rps")
log(f"req/s: fleet {rps_on:.0f}, single {rps_off:.0f}")

# ---------------------------------------------------------------- 5. audit shipping throughput
# A's shipper is held back while A serves DURATION s of load (a transaction holds a SHARE lock on
# audit_records, so its INSERTs wait, time out and back off; the records queue in memory, then
# overflow to the local JSONL); when the lock goes, the time from the first new row to the last
# gives the shipper's catch-up rate. Every line of A's trail must then be in the table exactly once.
DB_URL = PG_ADMIN_URL.rpartition("/")[0] + "/" + DB


def dbsql(sql: str) -> str:
    out = subprocess.run(["psql", DB_URL, "-X", "-v", "ON_ERROR_STOP=1", "-qAtc", sql], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        die(f"psql {sql!r}: {out.stderr.strip()}")
    return out.stdout


def shipped(name: str) -> int:
    return int(dbsql(f"SELECT count(*) FROM audit_records WHERE replica_id = '{name}'").strip() or 0)


def written(r: Replica) -> int:
    with open(r.dir / "audit.jsonl", "rb") as f:
        return sum(1 for _ in f)


wait_until(lambda: shipped("A") >= written(A), 60, "A's trail fully shipped before the outage")
before = shipped("A")
hold = DURATION + 2
locker = subprocess.Popen(["psql", DB_URL, "-X", "-q", "-c",
                           f"BEGIN; LOCK TABLE audit_records IN SHARE MODE; SELECT pg_sleep({hold}); COMMIT;"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
PROCS.append(locker)
time.sleep(0.5)  # the lock is taken before the load starts (a bench, not a test)
stalled = wrk(A, DURATION)
results["wrk_shipper_stalled"] = stalled
held_back = written(A) - shipped("A")
locker.wait(timeout=hold + 30)
t_release = time.perf_counter()
base = shipped("A")
t_first = None
deadline = time.monotonic() + 300
while time.monotonic() < deadline:
    n = shipped("A")
    if t_first is None and n > base:
        t_first = time.perf_counter()
    if n >= written(A):
        break
    time.sleep(0.02)
t_done = time.perf_counter()
total, in_table = written(A), shipped("A")
dup = int(dbsql(f"SELECT count(*) - count(DISTINCT seq) FROM audit_records WHERE replica_id = 'A'").strip() or 0)
drained = in_table - base
drain_s = (t_done - (t_first or t_release))
ship_rate = drained / drain_s if drain_s > 0 else float("nan")
results["audit_shipping"] = {"held_back": held_back, "drained": drained, "drain_s": drain_s,
                             "first_row_after_release_s": (t_first or t_done) - t_release,
                             "records_per_s": ship_rate, "trail_lines": total, "rows": in_table, "duplicates": dup}
log(f"audit shipping: {drained} records drained in {drain_s:.2f} s ({ship_rate:,.0f}/s); trail {total}, table {in_table}, duplicates {dup}")
if in_table != total or dup:
    die(f"audit shipping lost or duplicated records: trail {total} lines, table {in_table} rows, {dup} duplicates")

# Redis: the rate-limit script's round trip, outside the gateway.
lua = ROOT / "src/fleet/lua/ratelimit.lua"
redis_rows: list[tuple[str, str]] = []
if lua.exists():
    sha = subprocess.run(["redis-cli", "-h", REDIS[0], "-p", REDIS[1], "SCRIPT", "LOAD", lua.read_text()],
                         capture_output=True, text=True).stdout.strip()
    bench = subprocess.run(["redis-benchmark", "-h", REDIS[0], "-p", REDIS[1], "-n", "100000", "-q",
                            "EVALSHA", sha, "1", f"{PREFIX}:rl:bench-redis", "1000000000", "1"],
                           capture_output=True, text=True, timeout=300).stdout
    m = re.search(r"([\d.]+) requests per second, p50=([\d.]+) msec", bench.replace("\r", "\n"))
    if m:
        redis_rows.append(("ratelimit.lua EVALSHA (redis-benchmark, 50 clients)", f"{float(m.group(1)):,.0f} calls/s, p50 {float(m.group(2)) * 1000:.0f} µs"))
    lat = subprocess.run(["timeout", "3", "redis-cli", "-h", REDIS[0], "-p", REDIS[1], "--latency", "-i", "1"],
                         capture_output=True, text=True).stdout.strip().splitlines()
    if lat:
        parts = lat[-1].split()
        if len(parts) >= 3:
            redis_rows.append(("redis-cli --latency (PING round trip)", f"avg {float(parts[2]) * 1000:.0f} µs (min {parts[0]} ms, max {parts[1]} ms)"))
else:
    redis_rows.append(("ratelimit.lua", "not in this tree (src/fleet/lua/ratelimit.lua)"))

# ---------------------------------------------------------------- table
(OUT / "results.json").write_text(json.dumps(results, indent=1))
load = open("/proc/loadavg").read().split()[:3]
print()
print(f"Fleet bench: 3 replicas (release build) on one host, {os.cpu_count()} cores, load {' '.join(load)} at the end.")
print()
print("| measure | value |")
print("|---|---|")
for r in R[1:]:
    print(f"| propagation A → {r.name}, p50 / p99 (ms, {len(prop[r.name])} batches) | {p50_p99(prop[r.name])} |")
print(f"| propagation A → B, C overall, p50 / p99 (ms; target p99 < 250) | {p50_p99(allprop)} |")
if prop["A"]:
    print(f"| A's own install (issuing replica), p50 / p99 (ms) | {p50_p99(prop['A'])} |")
print(f"| admin call on A (commit + local swap), p50 / p99 (ms) | {p50_p99(admin_ms)} |")
print(f"| `?wait=all` round trip, p50 / p99 (ms; {wait_complete}/{WAIT_ALL} complete) | {p50_p99(wait_ms)} |")
for r in R:
    print(f"| stream cut on {r.name} after the lockdown POST on A returned, p50 / p99 (ms, {len(cut[r.name])} streams) | {p50_p99(cut[r.name])} |")
print(f"| stream cut overall, p50 / p99 (ms; target ≤ propagation + 100){'; ' + str(missing) + ' not ended in 15 s' if missing else ''} | {p50_p99(allcut)} |")
print(f"| req/s, fleet mode on (replica A, {CONNS} conns, median of {ROUNDS} × {DURATION} s) | {rps_on:,.0f} (p50 {med('fleet', 'p50_us') / 1000:.2f} ms, p99 {med('fleet', 'p99_us') / 1000:.2f} ms) |")
print(f"| req/s, fleet mode off (same policy without [fleet]) | {rps_off:,.0f} (p50 {med('single', 'p50_us') / 1000:.2f} ms, p99 {med('single', 'p99_us') / 1000:.2f} ms) |")
print(f"| fleet on vs off | {(rps_on / rps_off - 1) * 100:+.1f} % req/s, {(med('fleet', 'p50_us') - med('single', 'p50_us')):+.0f} µs p50 |")
print(f"| gateway process CPU per request, fleet on / off (µs; /proc, the replica's own cost) | {med('fleet', 'cpu_us_per_req'):.0f} / {med('single', 'cpu_us_per_req'):.0f} ({med('fleet', 'cpu_us_per_req') / med('single', 'cpu_us_per_req'):.2f}×) |")
print(f"| req/s, fleet on with the audit shipper stalled (step 5: no PostgreSQL INSERTs on the host) | {stalled['rps']:,.0f} ({(stalled['rps'] / rps_off - 1) * 100:+.1f} % vs off), CPU {stalled['cpu_us_per_req']:.0f} µs per request |")
a = results["audit_shipping"]
print(f"| audit shipping catch-up on A: {a['drained']:,} records held back during {DURATION} s of load, drained (first new row → last) | {a['drain_s']:.2f} s, {a['records_per_s']:,.0f} records/s; {a['rows']:,} rows = {a['trail_lines']:,} trail lines, {a['duplicates']} duplicates |")
for k, v in redis_rows:
    print(f"| Redis: {k} | {v} |")
