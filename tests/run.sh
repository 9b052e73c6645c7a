#!/usr/bin/env bash
# The project's test command: lint, build, Rust unit + integration tests, then the end-to-end suite that
# drives the real gateway binary with the official openai and anthropic Python SDKs. The fleet tests
# (tests/fleet.rs, tests/e2e/test_fleet.py) need PostgreSQL and Redis on loopback: tests/fleet-services.sh
# starts them (or installs them) first.
#
#   bash tests/run.sh
#
# Python dependencies go into .venv (git-ignored), installed from tests/e2e/requirements.txt and
# re-installed only when that file changes. The MCP reference server the e2e suite proxies
# (@modelcontextprotocol/server-everything, pinned in tests/e2e/mcp/package-lock.json) goes into
# tests/e2e/mcp/node_modules (git-ignored) with `npm ci`, re-installed only when the lock changes.
# Extra arguments are passed to pytest.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
REQS="$ROOT/tests/e2e/requirements.txt"
STAMP="$VENV/.firebreak-e2e-requirements"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
BIN="$TARGET_DIR/debug/firebreak"

stage() { printf '\n==> [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }
trap 'rc=$?; [ $rc -eq 0 ] || printf "\ntests/run.sh: FAILED (exit %s) during: %s\n" "$rc" "${CURRENT_STAGE:-setup}" >&2' EXIT

CURRENT_STAGE="lint"
stage "lint: cargo fmt --check, cargo clippy --all-targets -D warnings (no unwrap/expect outside tests: src/lib.rs)"
cargo fmt --check || die "cargo fmt --check: run \`cargo fmt\`"
cargo clippy --all-targets -- -D warnings

CURRENT_STAGE="cargo build"
stage "cargo build"
cargo build

CURRENT_STAGE="fleet services"
stage "fleet services: PostgreSQL and Redis on loopback for tests/fleet.rs (tests/fleet-services.sh)"
bash "$ROOT/tests/fleet-services.sh" || die "tests/fleet-services.sh: the fleet tests need PostgreSQL and Redis on 127.0.0.1"

CURRENT_STAGE="cargo test"
stage "cargo test --all-targets (unit and integration tests)"
cargo test --all-targets --no-fail-fast

CURRENT_STAGE="replay (tests/attacks)"
stage "replay the attack suite offline against policies/example.toml (any regression fails)"
mkdir -p "$TARGET_DIR"
"$BIN" replay tests/attacks --policy policies/example.toml --junit "$TARGET_DIR/replay-junit.xml" \
    > "$TARGET_DIR/replay-report.md" || { cat "$TARGET_DIR/replay-report.md"; die "firebreak replay: a case regressed (report above, JUnit in $TARGET_DIR/replay-junit.xml)"; }
tail -n 1 "$TARGET_DIR/replay-report.md"
grep -F '**REMEDIATION' "$TARGET_DIR/replay-report.md"

CURRENT_STAGE="python environment"
stage "python environment (.venv)"
command -v python3 >/dev/null || die "python3 is not installed (bash .ci/run installs it)"

venv_ok() { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1 && [ -x "$VENV/bin/pip" ]; }

make_venv() {
    rm -rf "$VENV"
    if python3 -m venv "$VENV" >/dev/null 2>&1 && venv_ok; then
        echo "created .venv with python3 -m venv"
        return 0
    fi
    rm -rf "$VENV"
    echo "python3 -m venv is not usable here (no ensurepip / python3-venv?)"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "running as root: installing python3-venv with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q python3-venv python3-pip
        python3 -m venv "$VENV" && venv_ok && { echo "created .venv with python3 -m venv"; return 0; }
        rm -rf "$VENV"
    fi
    echo "falling back to virtualenv (pip install --user virtualenv)"
    python3 -m pip install --user -q virtualenv \
        || python3 -m pip install --user -q --break-system-packages virtualenv \
        || die "cannot install virtualenv; install python3-venv (apt-get install python3-venv)"
    python3 -m virtualenv -q "$VENV" && venv_ok || die "cannot create $VENV with virtualenv"
    echo "created .venv with virtualenv"
}

if venv_ok; then
    echo "using existing .venv ($("$VENV/bin/python" --version 2>&1))"
else
    make_venv
fi

CURRENT_STAGE="python dependencies"
stage "python dependencies (tests/e2e/requirements.txt)"
want="$("$VENV/bin/python" - "$REQS" <<'PY'
import hashlib, sys
h = hashlib.sha256(open(sys.argv[1], "rb").read())
h.update(sys.version.encode())
print(h.hexdigest())
PY
)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    echo "requirements unchanged since the last install: skipping pip install"
else
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install -q -r "$REQS"
    printf '%s\n' "$want" > "$STAMP"
    "$VENV/bin/python" -m pip freeze | grep -Ei '^(openai|anthropic|pytest|httpx2?|mcp)==' | sed 's/^/installed: /'
fi

CURRENT_STAGE="npm dependencies"
stage "npm dependencies (tests/e2e/mcp: the MCP reference server)"
MCP_DIR="$ROOT/tests/e2e/mcp"
MCP_STAMP="$MCP_DIR/node_modules/.firebreak-e2e-lock"
MCP_EVERYTHING_BIN="$MCP_DIR/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
command -v node >/dev/null || die "node is not installed: the MCP e2e tests need Node.js and npm (bash .ci/run installs them)"
command -v npm >/dev/null || die "npm is not installed: the MCP e2e tests need it (bash .ci/run installs it)"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || echo "warning: node $(node --version) is older than 20, which some of server-everything's dependencies declare (@hono/node-server)"
npm_want="$( { cat "$MCP_DIR/package.json" "$MCP_DIR/package-lock.json"; node --version; } | sha256sum | cut -d' ' -f1)"
if [ -f "$MCP_STAMP" ] && [ "$(cat "$MCP_STAMP")" = "$npm_want" ] && [ -f "$MCP_EVERYTHING_BIN" ]; then
    echo "package-lock.json unchanged since the last install: skipping npm ci"
else
    (cd "$MCP_DIR" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci in tests/e2e/mcp failed"
    printf '%s\n' "$npm_want" > "$MCP_STAMP"
    echo "installed: $(cd "$MCP_DIR" && node -p 'require("./node_modules/@modelcontextprotocol/server-everything/package.json").version' 2>/dev/null | sed 's/^/@modelcontextprotocol\/server-everything@/') (node $(node --version))"
fi
[ -f "$MCP_EVERYTHING_BIN" ] || die "$MCP_EVERYTHING_BIN is missing after npm ci"

CURRENT_STAGE="e2e (pytest)"
stage "end-to-end tests with the official SDKs (pytest tests/e2e, FIREBREAK_BIN=$BIN)"
[ -x "$BIN" ] || die "the gateway binary $BIN is missing after cargo build"
FIREBREAK_BIN="$BIN" MCP_EVERYTHING_BIN="$MCP_EVERYTHING_BIN" "$VENV/bin/python" -m pytest tests/e2e -q -p no:cacheprovider "$@"

CURRENT_STAGE="done"
stage "all test stages passed"
