#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what the tests need (the real
# Fleetspeak peers and GRR from PyPI, MariaDB started if it is down), builds, lints, runs the unit,
# store-conformance (SQLite and MariaDB), end-to-end and fuzz-smoke suites.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

step "toolchain: the wasm target for bundled plugins, cargo-fuzz for the decoders of peer input"
rustup target add wasm32-wasip2 >/dev/null
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz@0.13.2
fi

step "peers: fleetspeak client, server, admin CLI and Python connectors from PyPI"
export FLEETGATE_PEERS_VENV="$root/target/peers-venv"
bash .ci/peers.sh "$FLEETGATE_PEERS_VENV"

step "GRR 4.0.0.post0 from PyPI for the GRR end-to-end tests (cached per machine)"
# About six minutes of compiling the first time on a machine, seconds afterwards.
SECONDS=0
# Assigned before the export: `export X=$(cmd)` would hide cmd's failure from `set -e`.
FLEETGATE_GRR_VENV="$(bash .ci/grr.sh)"
export FLEETGATE_GRR_VENV
echo "GRR virtualenv $FLEETGATE_GRR_VENV ready in ${SECONDS} s"

step "MariaDB for the store suite"
if ! mysqladmin -uroot --connect-timeout=2 ping >/dev/null 2>&1; then
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
  for _ in $(seq 1 30); do mysqladmin -uroot ping >/dev/null 2>&1 && break; sleep 1; done
fi
# Root must be able to log in over TCP without a password (peers.md).
mysql -uroot -e "ALTER USER root@localhost IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('')" 2>/dev/null || true
export FLEETGATE_TEST_MYSQL="mysql://root@127.0.0.1:3306"

step "haproxy for the distributed end-to-end tests"
command -v haproxy >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq haproxy; }

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "build"
cargo build --workspace --all-targets
export FLEETGATE_BIN="$root/target/debug/fleetgate"

step "fuzz every decoder of peer input, and the config parsers (bounded time per target)"
# cargo-fuzz needs nightly-only sanitizer flags; RUSTC_BOOTSTRAP lets the stable toolchain use them.
# Each target starts from its committed seeds (fuzz/seeds/<target>, if any) and the corpus kept
# from earlier runs (fuzz/corpus/<target>, not committed). docs/FUZZING.md records longer runs.
fuzz="$root/host/frontend/fuzz"
# The instrumented build (sanitizers, release, the store's dependencies through the notify and
# config targets) is the slowest of the run; its target directory is kept per machine outside
# the clone, as the GRR virtualenv is, so a later run rebuilds only the workspace's own crates.
fuzz_target="${FLEETGATE_FUZZ_TARGET_DIR:-/var/cache/fleetgate/fuzz-target}"
mkdir -p "$fuzz_target"
(cd host/frontend && RUSTC_BOOTSTRAP=1 cargo fuzz build --target-dir "$fuzz_target")
for target in $(cd host/frontend && RUSTC_BOOTSTRAP=1 cargo fuzz list); do
  mkdir -p "$fuzz/corpus/$target"
  dirs=("$fuzz/corpus/$target")
  [ -d "$fuzz/seeds/$target" ] && dirs+=("$fuzz/seeds/$target")
  (cd host/frontend && RUSTC_BOOTSTRAP=1 cargo fuzz run --target-dir "$fuzz_target" "$target" "${dirs[@]}" -- \
    -max_total_time="${FUZZ_SECONDS:-15}" -print_final_stats=0)
done

step "MariaDB restart survival (alone: it restarts the shared MariaDB)"
cargo test -p fleetgate-tests --test distributed -- --ignored mariadb_restart

step "tests"
cargo test --workspace
