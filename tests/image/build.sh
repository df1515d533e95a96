#!/usr/bin/env bash
# Builds the operator's image without a Docker engine (`make image`, and tests/image.rs):
#
#  1. a statically linked binary: the gnu target with `+crt-static` (glibc's static libraries
#     come with libc6-dev), in its own target dir, target/static, so the normal build is
#     untouched; cargo makes a second run a no-op;
#  2. the image, with buildah (vfs storage, chroot isolation, no daemon), from the final
#     stage of the repository's Dockerfile with its one `COPY --from=builder` rewritten to
#     copy this binary: the same layout, labels, user, entrypoint and command as
#     `docker build` gives;
#  3. written to target/image/password-rotator.oci.tar (an oci-archive).
#
# The image is rebuilt only when the binary, that stage or this script changed. buildah comes
# from `make deps` (`make image` installs it first). Prints the archive's path and size.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

triple=x86_64-unknown-linux-gnu
static_dir="$root/target/static"
out="$root/target/image"
archive="$out/password-rotator.oci.tar"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
tag="localhost/password-rotator:$version"

say() { echo "image: $*" >&2; }
die() { echo "image: $*" >&2; exit 1; }
command -v buildah >/dev/null || die "buildah not found: run \`make deps\` (or tests/install-packages.sh buildah)"

# --- 1. the static binary ------------------------------------------------------------------
# A clean environment: what `cargo test` sets for the test that runs this script (CARGO_PKG_*,
# LD_LIBRARY_PATH, ...) would otherwise change cargo's fingerprints and rebuild everything.
keep=(PATH="$PATH" HOME="${HOME:-/root}")
while IFS= read -r var; do keep+=("$var=${!var}"); done < <(compgen -e | grep -E \
  '^(CARGO_HOME|RUSTUP_HOME|RUSTUP_TOOLCHAIN|CARGO_(NET|HTTP|REGISTRIES|REGISTRY|SOURCE)_.*|SSL_CERT_(FILE|DIR)|(https?|no)_proxy|(HTTPS?|NO)_PROXY)$' || true)
start=$SECONDS
env -i "${keep[@]}" RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$static_dir" \
  "${CARGO:-cargo}" build --locked --release --target "$triple" \
  -p password-rotator --bin password-rotator
binary="$static_dir/$triple/release/password-rotator"
say "static binary built or up to date in $((SECONDS - start)) s: ${binary#"$root"/}"
# Static: no program interpreter and no shared library needed.
if readelf -lW "$binary" | grep -q 'INTERP' || readelf -dW "$binary" | grep -q '(NEEDED)'; then
  die "$binary is not statically linked: $(file -b "$binary" 2>/dev/null || true)"
fi

# --- 2. the build context: the binary and the Dockerfile's final stage ---------------------
ctx="$out/context"
mkdir -p "$ctx"
# Everything from the last FROM to the end, with the binary copied from the context.
awk '/^FROM /{stage=""} {stage = stage $0 "\n"} END {printf "%s", stage}' Dockerfile \
  >"$ctx/Containerfile.tmp"
head -n1 "$ctx/Containerfile.tmp" | grep -qx 'FROM scratch' \
  || die "the Dockerfile's final stage is not FROM scratch"
copies="$(grep -c '^COPY --from=builder /password-rotator /password-rotator$' "$ctx/Containerfile.tmp" || true)"
[ "$copies" = 1 ] \
  || die "the Dockerfile's final stage must have exactly one 'COPY --from=builder /password-rotator /password-rotator'"
grep -q '^RUN' "$ctx/Containerfile.tmp" && die "the final stage runs nothing (it has no shell)"
sed -i 's|^COPY --from=builder /password-rotator /password-rotator$|COPY password-rotator /password-rotator|' \
  "$ctx/Containerfile.tmp"
mv "$ctx/Containerfile.tmp" "$ctx/Containerfile"

key="$(cat <(sha256sum <"$binary") <(sha256sum <"$ctx/Containerfile") \
  <(sha256sum <"${BASH_SOURCE[0]}") | sha256sum | cut -d' ' -f1)"
if [ -f "$archive" ] && [ "$(cat "$out/key" 2>/dev/null)" = "$key" ]; then
  say "up to date: ${archive#"$root"/} ($(stat -c %s "$archive") bytes)"
  echo "$archive"
  exit 0
fi

# --- 3. buildah ----------------------------------------------------------------------------
start=$SECONDS
# Without its symbol table, as the Dockerfile's builder stage installs it.
install -m 0755 --strip "$binary" "$ctx/password-rotator"
# Its own storage under target/, so nothing outside the work tree is touched.
buildah=(buildah --root "$out/storage" --runroot "$out/run" --storage-driver vfs)
"${buildah[@]}" rmi -f "$tag" >/dev/null 2>&1 || true
"${buildah[@]}" bud --quiet --isolation chroot --layers=false --pull=never \
  -f "$ctx/Containerfile" -t "$tag" "$ctx" >/dev/null
rm -f "$archive.tmp"
"${buildah[@]}" push --quiet "$tag" "oci-archive:$archive.tmp:password-rotator:$version"
mv "$archive.tmp" "$archive"
"${buildah[@]}" rmi -f "$tag" >/dev/null 2>&1 || true
rm -f "$ctx/password-rotator"
echo "$key" >"$out/key"
size=$(stat -c %s "$archive")
say "built ${archive#"$root"/} in $((SECONDS - start)) s: $size bytes ($(numfmt --to=iec-i --suffix=B "$size"))"
echo "$archive"
