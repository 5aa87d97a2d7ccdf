#!/usr/bin/env bash
# `cargo deny check` (advisories, licences, bans, sources) against the vendored RustSec
# advisory snapshot in supply-chain/ (GitHub, where the live database lives, is unreachable
# from this CI). With DENY_LIVE_DB=1 it fetches the live database instead.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DENY_VERSION=0.20.2
# cargo-deny keeps each database in <db-path>/<name>-<hash of its URL>; this is the name it
# uses for https://github.com/rustsec/advisory-db (deny.toml), fixed for the pinned version.
DB_DIR=target/advisory-dbs/advisory-db-3157b0e258782691
BUNDLE=supply-chain/advisory-db.bundle

if ! cargo install --list | grep -q "^cargo-deny v${CARGO_DENY_VERSION}:"; then
  echo "==> installing cargo-deny ${CARGO_DENY_VERSION}" >&2
  cargo install cargo-deny --version "${CARGO_DENY_VERSION}" --locked
fi

if [ "${DENY_LIVE_DB:-0}" = 1 ]; then
  exec cargo deny check
fi

snapshot=$(git bundle list-heads "$BUNDLE" | awk '{print $1}')
if [ "$(git -C "$DB_DIR" rev-parse HEAD 2>/dev/null)" != "$snapshot" ]; then
  rm -rf "$DB_DIR"
  mkdir -p "$(dirname "$DB_DIR")"
  git clone --quiet --branch main "$BUNDLE" "$DB_DIR"
fi
dated=$(git -C "$DB_DIR" show -s --format=%cs HEAD)
echo "advisory database: RustSec snapshot of ${dated} ($(git -C "$DB_DIR" show -s --format=%s HEAD | sed 's/.*tree of \([0-9a-f]\{12\}\).*/upstream commit \1/'))"
age_days=$(( ( $(date +%s) - $(git -C "$DB_DIR" show -s --format=%ct HEAD) ) / 86400 ))
if [ "$age_days" -gt 30 ]; then
  echo "WARNING: the advisory snapshot is ${age_days} days old (more than 30): advisories published after ${dated} are not checked." >&2
  echo "         Refresh it (supply-chain/README.md, \"To refresh the snapshot\"), or run DENY_LIVE_DB=1 scripts/supply_chain.sh where GitHub is reachable." >&2
fi
# --offline: no network for the database; every crate of the lock file must be local first.
cargo fetch --locked --quiet
cargo deny --offline check --hide-inclusion-graph --show-stats
# The fuzz workspace has a lock file of its own: it must be current (--locked), and its crates
# are checked for advisories too.
cargo fetch --locked --quiet --manifest-path fuzz/Cargo.toml
cargo deny --offline --manifest-path fuzz/Cargo.toml check advisories --hide-inclusion-graph
