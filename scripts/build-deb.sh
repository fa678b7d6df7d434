#!/usr/bin/env bash
# `make deb`: builds libnginx-mod-http-sessions for Debian's packaged nginx
# with dpkg-buildpackage and the debian/ directory, that is with nginx-dev's
# dh_nginx and nginx_mod build system, as Debian's own module packages.
# The build runs on a copy of the tree under target/deb/ (dpkg-buildpackage
# writes beside the source). Prints the .deb's path last.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/share/nginx/src/conf_flags ] || ! command -v dh_nginx >/dev/null; then
  echo "nginx-dev is not installed: run 'scripts/deps.sh deb' (or apt-get install nginx-dev debhelper)" >&2
  exit 1
fi

version=$(dpkg-parsechangelog -S Version)
upstream=${version%-*}
crate=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | sed -n 1p)
if [ "$upstream" != "$crate" ]; then
  echo "debian/changelog is at $upstream, Cargo.toml at $crate: add a changelog entry (dch -v $crate-1)" >&2
  exit 1
fi

work=$PWD/target/deb
src=$work/src/ngx-sessions-$upstream
rm -rf "$work/src"
mkdir -p "$src"
tar --exclude=./target --exclude=./.run --exclude=./.git --exclude=./.ci-cargo-home -cf - . | tar -xf - -C "$src"

(cd "$src" && dpkg-buildpackage -b -us -uc > "$work/build.log" 2>&1) || {
  tail -n 60 "$work/build.log" >&2
  echo "dpkg-buildpackage failed: the whole log is $work/build.log" >&2
  exit 1
}

arch=$(dpkg --print-architecture)
out=$work/libnginx-mod-http-sessions_${version}_${arch}.deb
cp "$work/src/libnginx-mod-http-sessions_${version}_${arch}.deb" "$out"
echo "$out ($(dpkg-deb -f "$out" Depends))"
