#!/usr/bin/env bash
# Installs what building and testing Eddy needs on a fresh Debian machine:
# a Rust toolchain of at least the workspace's rust-version (checked, not
# installed), and the real clients the tests drive: psql (Debian's
# postgresql-client) and psycopg 3 (PyPI). Safe to run again.
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

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v psql >/dev/null 2>&1; then
    echo "setup: installing postgresql-client"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client >/dev/null
fi
echo "setup: $(psql --version)"

if ! python3 -c 'import psycopg' >/dev/null 2>&1; then
    echo "setup: installing psycopg"
    python3 -m pip install --quiet --disable-pip-version-check 'psycopg[binary]>=3.1'
fi
echo "setup: psycopg $(python3 -c 'import psycopg; print(psycopg.__version__)')"
