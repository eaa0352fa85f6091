#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine, builds leco, and shows every TCP/UDP
# connection of this machine live in the terminal (Ctrl-C stops).
# Extra arguments go to leco-service, e.g. `./scripts/run.sh --json`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh build
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked --bins
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
exec $sudo ./target/release/leco-service --standalone "$@"
