#!/bin/sh
# cargo-skeleton.sh SRC OUT: writes to OUT what cargo needs to build the dependencies of the
# workspace at SRC, and nothing else: Cargo.lock, every member's Cargo.toml, cargo's own config
# and toolchain files, and a placeholder at the path of every target cargo finds (libraries,
# binaries, tests, benches, examples, build scripts; declared in a manifest or auto-discovered).
# Targets come from `cargo metadata`, so a new member or target needs no change here.
# Every file gets one fixed mtime: OUT is byte-for-byte the same as long as manifests and
# target paths are, and the image layer that compiles the dependencies is reused.
set -eu

src=$(cd "${1:?usage: cargo-skeleton.sh SRC OUT}" && pwd)
out=${2:?usage: cargo-skeleton.sh SRC OUT}

# --no-deps: the members alone, no resolution, no network.
meta=$(cd "$src" && cargo metadata --no-deps --offline --format-version 1)

rm -rf "$out"
mkdir -p "$out"

relative() {
  case "$1" in
    "$src"/*) printf '%s\n' "${1#"$src"/}" ;;
    *) echo "cargo-skeleton: $1 is outside $src" >&2; exit 1 ;;
  esac
}

# Manifests and target sources, one path a line (paths in cargo's JSON carry no quotes).
printf '%s' "$meta" | grep -oE '"manifest_path":"[^"]*"' | sed 's/^"manifest_path":"//; s/"$//' |
  sort -u | while IFS= read -r path; do
    rel=$(relative "$path")
    mkdir -p "$out/$(dirname "$rel")"
    cp "$path" "$out/$rel"
  done
printf '%s' "$meta" | grep -oE '"src_path":"[^"]*"' | sed 's/^"src_path":"//; s/"$//' |
  sort -u | while IFS= read -r path; do
    rel=$(relative "$path")
    mkdir -p "$out/$(dirname "$rel")"
    # Compiles as a library, a binary, a test, a bench or a build script alike.
    printf '#![allow(dead_code)]\nfn main() {}\n' > "$out/$rel"
  done

for file in Cargo.lock .cargo/config.toml .cargo/config rust-toolchain.toml rust-toolchain; do
  if [ -f "$src/$file" ]; then
    mkdir -p "$out/$(dirname "$file")"
    cp "$src/$file" "$out/$file"
  fi
done

find "$out" -exec touch -h -d '@0' {} +
