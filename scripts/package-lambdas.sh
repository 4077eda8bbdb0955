#!/usr/bin/env bash
# Builds the Lambda zips (provided.al2023: one `bootstrap` executable per zip) with cargo-lambda.
#
#   scripts/package-lambdas.sh [--arch arm64|x86_64|all] [--out DIR] [--fast] [FUNCTION...]
#
# FUNCTION is normalize, lookup or compact (default: all three). Zips land in
# DIR/<arch>/<function>/bootstrap.zip (default DIR: target/lambda, ignored by git), the layout the Terraform AWS
# example reads through its `artifacts_dir` variable.
#
# Cost: normalize has no C++ in its tree and builds in minutes. lookup and compact link the
# bundled DuckDB: cross-compiling that is about an hour of CPU on 2 cores. If zig's C++ toolchain
# fails on DuckDB, use `CARGO_LAMBDA_COMPILER=cargo` on a native arm64 machine (or
# `CARGO_LAMBDA_COMPILER=cross` with Docker) instead; see docs/deploy-aws.md.
#
# --fast builds without LTO and with more codegen units (release otherwise): CI uses it to check
# that packaging works without paying for LTO; zips for production come from the plain release.
set -euo pipefail
cd "$(dirname "$0")/.."

arch=arm64
out=target/lambda
fast=0
functions=()
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch="${2:?--arch needs a value}"; shift 2 ;;
    --out) out="${2:?--out needs a value}"; shift 2 ;;
    --fast) fast=1; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) functions+=("$1"); shift ;;
  esac
done
[ "${#functions[@]}" -gt 0 ] || functions=(normalize lookup compact)

# Function (= binary) to its workspace package.
package_of() {
  case "$1" in
    normalize) echo natlake-normalize ;;
    lookup) echo natlake-lookup ;;
    compact) echo natlake-compact ;;
    *) echo "unknown function $1 (normalize, lookup, compact)" >&2; return 1 ;;
  esac
}

case "$arch" in
  arm64) arches=(arm64) ;;
  x86_64) arches=(x86_64) ;;
  all) arches=(arm64 x86_64) ;;
  *) echo "--arch must be arm64, x86_64 or all" >&2; exit 2 ;;
esac

command -v cargo-lambda >/dev/null || {
  echo "cargo-lambda not found: pip install -r .ci/requirements.txt (it brings zig)" >&2
  exit 1
}

# Its own target dir: cross builds share nothing with the host build, and mixing them would
# make each invalidate the other's build-script outputs.
export CARGO_TARGET_DIR="${LAMBDA_TARGET_DIR:-$HOME/.cache/natlake/target-lambda}"
if [ "$fast" = 1 ]; then
  export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
fi

args=()
for f in "${functions[@]}"; do
  args+=(-p "$(package_of "$f")" --bin "$f")
done

for a in "${arches[@]}"; do
  case "$a" in
    arm64) flag=--arm64 triple=aarch64-unknown-linux-gnu machine=aarch64 ;;
    x86_64) flag=--x86-64 triple=x86_64-unknown-linux-gnu machine=x86-64 ;;
  esac
  if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$triple"; then
    rustup target add "$triple"
  fi
  dir="$out/$a"
  mkdir -p "$dir"
  echo "== cargo lambda build ($a): ${functions[*]}"
  start=$(date +%s)
  cargo lambda build --release --locked "$flag" --output-format zip --lambda-dir "$dir" "${args[@]}"
  echo "   built in $(( $(date +%s) - start )) s"
  for f in "${functions[@]}"; do
    zip="$dir/$f/bootstrap.zip"
    # A zip Lambda can start: one executable named bootstrap for the right machine.
    python3 - "$zip" "$machine" <<'PY'
import sys, zipfile
path, machine = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(path) as z:
    names = z.namelist()
    if "bootstrap" not in names:
        sys.exit(f"{path}: no bootstrap in {names}")
    head = z.open("bootstrap").read(20)
    mode = z.getinfo("bootstrap").external_attr >> 16
if head[:4] != b"\x7fELF":
    sys.exit(f"{path}: bootstrap is not an ELF executable")
e_machine = int.from_bytes(head[18:20], "little")
want = {"aarch64": 183, "x86-64": 62}[machine]
if e_machine != want:
    sys.exit(f"{path}: bootstrap is for ELF machine {e_machine}, expected {want} ({machine})")
if not mode & 0o111:
    sys.exit(f"{path}: bootstrap is not executable (mode {oct(mode)})")
print(f"   {path}: bootstrap for {machine}, ok")
PY
    ls -l "$zip"
  done
done
