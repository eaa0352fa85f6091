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
$sudo ./target/release/leco-bench --out bench/RESULTS.md "$@"
# The overlay's frame render timing (no root needed): its own "Overlay
# rendering" section of the same report, replaced on each run.
cargo bench --locked -p leco-overlay --bench render -- --append bench/RESULTS.md
# The running overlay under a headless sway (root: it runs sway as a test
# user): its "Overlay (live)" section, replaced on each run.
$sudo ./target/release/leco-bench --overlay-live --out bench/RESULTS.md "$@"
