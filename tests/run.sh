#!/usr/bin/env bash
# The test command (README): unit tests of every crate and the end-to-end tests in tests/,
# which run the real binaries against real sockets and stores.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/natlake/target}"
# One cargo invocation: a separate `cargo build` could resolve build-script features differently
# and compile the bundled DuckDB a second time.
cargo test --locked --workspace --no-fail-fast "$@"
