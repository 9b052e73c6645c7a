#!/usr/bin/env bash
# Detection quality before/after in one run: builds `firebreak` at BASE (default: the commit that
# added the harness on top of main's signatures) in a temporary worktree, then runs
# `firebreak eval-detection` of BASE and of the working tree on the same sets, one after the other.
#
#   bash benches/detection-before-after.sh [BASE] [SETS...]
#
# Uses $CARGO_TARGET_DIR (default: target); debug builds (the harness is not timed).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:-be17925}
shift || true
SETS=("$@")
[ ${#SETS[@]} -eq 0 ] && SETS=(tests/detection tests/detection/holdout)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target} CARGO_PROFILE_DEV_DEBUG=0
tmp=$(mktemp -d)
trap 'git worktree remove --force "$tmp/base" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
# Both builds share the target directory and cargo names both artefacts alike: build BASE first,
# keep its binary, then touch the crate roots so the working tree is rebuilt over it.
git worktree add -q "$tmp/base" "$BASE"
(cd "$tmp/base" && cargo build -q --bin firebreak)
cp "$CARGO_TARGET_DIR/debug/firebreak" "$tmp/firebreak-before"
touch src/lib.rs src/main.rs
cargo build -q --bin firebreak
cp "$CARGO_TARGET_DIR/debug/firebreak" "$tmp/firebreak-after"
for set in "${SETS[@]}"; do
    echo "### $set — before ($BASE)"
    "$tmp/firebreak-before" eval-detection "$set"
    echo "### $set — after ($(git rev-parse --short HEAD), working tree)"
    "$tmp/firebreak-after" eval-detection "$set"
done
