#!/usr/bin/env bash
# A profile-guided (PGO) release build of `normalize`: build it instrumented, normalize a
# generated training day with it, merge the profile, build again with the profile. The training
# day is the conversion benchmark's generator with another seed and another date than the day
# bench/normalize.sh measures, so the measured input is not the one the build learned from.
#
#   bench/pgo.sh                        # prints the path of the PGO-built binary on its last line
#   NORMALIZE_BIN=$(bench/pgo.sh | tail -1) SKIP_BUILD=1 bench/normalize.sh
#
# Needs llvm-profdata of the compiler's own LLVM: `rustup component add llvm-tools` (done here
# when it is missing). Two full release builds of normalize (fat LTO, no DuckDB): ~10 minutes each
# on 2 cores, in their own target directories (RUSTFLAGS differ from the normal build's).
#
# Environment (all optional):
#   PGO_DIR=$HOME/.cache/natlake/pgo   target directories, training day and profile
#   TRAIN_HOURS=2                       hours of the training day
#   PGO_RUSTFLAGS                       more flags for both builds, e.g. -Ctarget-cpu=x86-64-v3
#   CONV_TARGET_DIR                     the normal release build's directory, for the generator
#                                       (default $HOME/.cache/natlake/target-conv)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGO_DIR=${PGO_DIR:-$HOME/.cache/natlake/pgo}
TRAIN_HOURS=${TRAIN_HOURS:-2}
export RUST_LOG=${RUST_LOG:-warn}

sysroot=$(rustc --print sysroot)
host=$(rustc -vV | awk '/^host:/ { print $2 }')
profdata=$sysroot/lib/rustlib/$host/bin/llvm-profdata
if [ ! -x "$profdata" ]; then
  rustup component add llvm-tools >&2
fi

# With an explicit --target, RUSTFLAGS reach only what is built for it: build scripts and
# proc macros are not instrumented (they would write profiles while compiling).
build() { # $1 = target dir, $2 = RUSTFLAGS, then the cargo arguments naming what to build
  local dir=$1 flags=$2
  shift 2
  (cd "$ROOT" && CARGO_TARGET_DIR=$dir RUSTFLAGS="$flags ${PGO_RUSTFLAGS:-}" \
    cargo build --release --target "$host" "$@" >&2)
}

# The generator: the normal release build, as bench/normalize.sh builds it (same packages, so
# a warm directory rebuilds nothing).
conv=${CONV_TARGET_DIR:-$HOME/.cache/natlake/target-conv}
(cd "$ROOT" && CARGO_TARGET_DIR=$conv \
  cargo build --release -p natlake-normalize -p natlake-bench-cgnat -p natlake-compact --bins >&2)

# Both builds of normalize name exactly the same packages: the profile finds its functions by
# their symbol names, whose hashes change with the features another package would unify in.
raw=$PGO_DIR/profraw
rm -rf "$raw" "$PGO_DIR/train"
mkdir -p "$PGO_DIR/train"
build "$PGO_DIR/target-gen" "-Cprofile-generate=$raw" -p natlake-normalize --bin normalize
# 2026-11-08, seed 7 (bench/normalize.sh measures 2026-11-01, seed 1).
"$conv/release/natlake-bench-cgnat" mix --store "file://$PGO_DIR/train/store" --json /dev/null --csv /dev/null \
  --hours "$TRAIN_HOURS" --start 1794096000 --seed 7 >"$PGO_DIR/train/gen.json"
"$PGO_DIR/target-gen/$host/release/normalize" --store "file://$PGO_DIR/train/store" run --workers 1 --progress-every 0 >&2
"$profdata" merge -o "$PGO_DIR/merged.profdata" "$raw"
# Named by its content: cargo does not see a changed profile behind an unchanged flag, a new
# name rebuilds.
profile=$PGO_DIR/normalize-$(sha256sum "$PGO_DIR/merged.profdata" | cut -c1-16).profdata
rm -f "$PGO_DIR"/normalize-*.profdata
mv "$PGO_DIR/merged.profdata" "$profile"
rm -rf "$raw" "$PGO_DIR/train"
build "$PGO_DIR/target-use" "-Cprofile-use=$profile" -p natlake-normalize --bin normalize
echo "$PGO_DIR/target-use/$host/release/normalize"
