#!/usr/bin/env bash
# Installs what building and testing Eddy needs on a fresh Debian machine:
# a Rust toolchain of at least the workspace's rust-version (checked, not
# installed); the C toolchain, pkg-config and zlib headers that the rdkafka
# crate's bundled librdkafka builds with; the real clients the tests drive:
# psql (Debian's postgresql-client) and psycopg 3 (PyPI); and tansu, a
# Kafka-protocol broker the Kafka tests start (built once per machine into
# ~/.cache/eddy/tools). Safe to run again.
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

apt_updated=no
apt_install() {
    if [ "$apt_updated" = no ]; then
        as_root apt-get update -qq
        apt_updated=yes
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# librdkafka (built from the rdkafka crate's sources by mklove's ./configure and
# make) needs bash, make, a C and a C++ compiler; zlib comes from the system
# through pkg-config, so librdkafka and libz-sys agree on one zlib. RocksDB's
# C++ (librocksdb-sys) needs the same compilers and libclang for bindgen.
missing=""
command -v make >/dev/null 2>&1 || missing="$missing make"
command -v cc >/dev/null 2>&1 || missing="$missing gcc libc6-dev"
command -v c++ >/dev/null 2>&1 || missing="$missing g++"
command -v pkg-config >/dev/null 2>&1 || missing="$missing pkg-config"
pkg-config --exists zlib 2>/dev/null || missing="$missing zlib1g-dev"
# librocksdb-sys generates its bindings with bindgen, which loads libclang.
ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || missing="$missing libclang-dev"
if [ -n "$missing" ]; then
    echo "setup: installing$missing"
    # shellcheck disable=SC2086 # a list of package names
    apt_install $missing
fi
echo "setup: build tools ok ($(cc --version | head -n1); zlib $(pkg-config --modversion zlib))"

if ! command -v psql >/dev/null 2>&1; then
    echo "setup: installing postgresql-client"
    apt_install postgresql-client
fi
echo "setup: $(psql --version)"

if ! python3 -c 'import psycopg' >/dev/null 2>&1; then
    echo "setup: installing psycopg"
    python3 -m pip install --quiet --disable-pip-version-check 'psycopg[binary]>=3.1'
fi
echo "setup: psycopg $(python3 -c 'import psycopg; print(psycopg.__version__)')"

# tansu: a Kafka-protocol broker from crates.io (no Docker, no JVM) that the
# Kafka tests start on a free port. Newer releases (renamed nisshi) need a newer
# Rust. Without the dynostore or libsql feature it has no storage engine.
tools="$HOME/.cache/eddy/tools"
tansu="$tools/bin/tansu"
if [ ! -x "$tansu" ]; then
    echo "setup: building tansu 0.6.0 into $tools (once per machine; about 17 minutes)"
    CARGO_TARGET_DIR="$HOME/.cache/eddy/tansu-build" \
        cargo install tansu@0.6.0 --locked --features dynostore,libsql --root "$tools"
fi
echo "setup: $("$tansu" --version)"
