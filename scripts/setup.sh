#!/usr/bin/env bash
# Installs what building and testing Eddy needs on a fresh Debian machine.
# Today that is only a Rust toolchain of at least the workspace's
# rust-version; later steps (RocksDB, a Kafka broker) will add to this file.
set -euo pipefail

required="1.94"
if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install Rust $required or newer (https://rustup.rs)" >&2
    exit 1
fi
have=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$required" "$have" | sort -V | head -n1)" != "$required" ]; then
    echo "setup: rustc $have is older than $required" >&2
    exit 1
fi
echo "setup: rustc $have ok"
