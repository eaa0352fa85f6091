#!/usr/bin/env bash
# Installs what leco needs on Debian/Ubuntu: `deps.sh build` for building and
# running, `deps.sh test` for the test suite as well. Idempotent; uses sudo
# when not root.
set -euo pipefail

want=${1:-build}
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi

# clang builds the eBPF programs; libelf/zlib/pkg-config build the vendored libbpf.
pkgs=(clang llvm libelf-dev zlib1g-dev build-essential pkg-config ca-certificates curl)
# The overlay draws with DejaVu (its default font; the render tests and the
# benchmark load DejaVuSansMono.ttf from this package by path).
pkgs+=(fonts-dejavu-core)
if [ "$want" = test ]; then
  # bpftool checks that programs are gone after exit; dbus-daemon runs the
  # private system-like bus of the D-Bus tests, busctl (systemd) and
  # dbus-monitor (dbus-bin) are their clients; setpriv (util-linux) runs
  # clients as other users.
  pkgs+=(bpftool dbus-daemon dbus-bin util-linux)
  # The overlay's end-to-end test runs a headless sway, screenshots it with
  # grim, and draws with DejaVu.
  pkgs+=(sway grim fonts-dejavu-core)
  # leco-notify's test shows its notifications with a real notification
  # server under that sway: mako (and makoctl, to invoke an action).
  pkgs+=(mako-notifier)
  command -v busctl >/dev/null 2>&1 || pkgs+=(systemd)
  # The system test builds a Debian root filesystem (debootstrap) and boots
  # the installed service in it under systemd-nspawn (systemd-container).
  pkgs+=(debootstrap systemd-container)
  # The blocked-and-failed tests put nftables rules in network namespaces
  # of their own (nft), joined by veth pairs (ip, iproute2).
  pkgs+=(nftables iproute2)
  # The `program` tests run real interpreters: Python, Perl and Bash (always
  # there), Node.js, Ruby and a JDK (javac and jar build the test's jar).
  command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
  command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
  command -v ruby >/dev/null 2>&1 || pkgs+=(ruby)
  command -v javac >/dev/null 2>&1 && command -v jar >/dev/null 2>&1 || pkgs+=(default-jdk-headless)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Rust: the workspace needs a recent stable toolchain (see Cargo.toml's rust-version).
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
install_rustup() {
  if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rustup >/dev/null 2>&1; then
    # Beside a distribution's older Rust, if there is one: ~/.cargo/bin
    # comes first on the scripts' PATH.
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
      RUSTUP_INIT_SKIP_PATH_CHECK=yes sh -s -- -y --profile minimal
  fi
  export PATH="$HOME/.cargo/bin:$PATH"
  rustup default stable
}
if ! command -v cargo >/dev/null 2>&1; then
  echo "deps: no cargo found; installing rustup"
  install_rustup
fi
# An older toolchain would fail deep in the build; say so here instead.
need=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$(dirname "$0")/../Cargo.toml")
have=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
  if command -v rustup >/dev/null 2>&1; then
    echo "deps: rustc $have is older than the $need leco needs; updating the stable toolchain"
    rustup update stable >/dev/null && rustup default stable >/dev/null
  else
    echo "deps: rustc $have is older than the $need leco needs; installing rustup's stable toolchain"
    install_rustup
  fi
fi
if [ "$want" = test ]; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi
cargo --version
