#!/usr/bin/env bash
# The whole test suite, on a fresh Debian/Ubuntu machine or a developer's:
# installs what it needs, checks formatting and lints, runs every test.
# Tests that load eBPF programs need root: as a normal user they run under sudo.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh test
export PATH="$HOME/.cargo/bin:$PATH"
if [ "$(id -u)" -ne 0 ]; then
  export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="sudo -E"
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="sudo -E"
fi
echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
