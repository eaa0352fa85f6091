#!/usr/bin/env bash
# Measures leco's cost on this machine (with vs without leco, same run) and
# writes bench/RESULTS.md. Needs root for loading eBPF and bpf_stats.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh test
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked --bins
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
exec $sudo ./target/release/leco-bench --out bench/RESULTS.md "$@"
