#!/usr/bin/env bash
# `make deb`: builds the module against Debian's packaged nginx (nginx-dev:
# same source and configure flags) and packs it like Debian's own
# libnginx-mod-http-* packages. Output: target/deb/libnginx-mod-http-sessions_<version>_<arch>.deb
set -euo pipefail
cd "$(dirname "$0")/.."

src=/usr/share/nginx/src
if [ ! -f "$src/conf_flags" ]; then
  echo "nginx-dev is not installed: run 'scripts/deps.sh deb' (or apt-get install nginx-dev)" >&2
  exit 1
fi

work=$PWD/target/deb
rm -rf "$work/nginx" "$work/pkg"
mkdir -p "$work"
cp -a "$src" "$work/nginx"

# Configure a copy of Debian's tree with Debian's flags: the module is then
# binary compatible with /usr/sbin/nginx.
(
  cd "$work/nginx"
  # shellcheck disable=SC1091
  . ./conf_flags
  ./configure "${NGX_CONF_FLAGS[@]}" > "$work/configure.log"
)

NGINX_BUILD_DIR="$work/nginx/objs" CARGO_TARGET_DIR="$work/cargo" \
  cargo build --release --no-default-features --features export-modules

nginx_version=$(sed -n 's/^#define NGINX_VERSION *"\(.*\)"/\1/p' "$work/nginx/src/core/nginx.h")
# The ABI the packaged nginx provides, e.g. nginx-abi-1.22.1-7.
abi=$(dpkg-query -W -f='${Provides}\n' nginx nginx-core 2>/dev/null | tr ',' '\n' | sed -n 's/^ *\(nginx-abi-[^ ]*\).*/\1/p' | sed -n 1p)
if [ -z "$abi" ]; then
  abi=$(apt-cache show nginx 2>/dev/null | sed -n 's/^Provides:.*\(nginx-abi-[^ ,]*\).*/\1/p' | sed -n 1p)
fi
if [ -z "$abi" ]; then
  echo "cannot tell the nginx ABI (nginx-abi-*): is Debian's nginx known to apt?" >&2
  exit 1
fi

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | sed -n 1p)
arch=$(dpkg --print-architecture)
pkg=libnginx-mod-http-sessions
root=$work/pkg

install -Dm644 "$work/cargo/release/libngx_http_sessions_module.so" \
  "$root/usr/lib/nginx/modules/ngx_http_sessions_module.so"
strip --strip-unneeded "$root/usr/lib/nginx/modules/ngx_http_sessions_module.so"
install -d "$root/usr/share/nginx/modules-available"
echo "load_module modules/ngx_http_sessions_module.so;" \
  > "$root/usr/share/nginx/modules-available/mod-http-sessions.conf"
install -Dm644 README.md "$root/usr/share/doc/$pkg/README.md"
cat > "$root/usr/share/doc/$pkg/copyright" <<COPY
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ngx-sessions
License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.
COPY

install -d "$root/DEBIAN"
cat > "$root/DEBIAN/control" <<CONTROL
Package: $pkg
Version: $version-1
Architecture: $arch
Maintainer: ngx-sessions developers <ngx-sessions@localhost>
Depends: $abi, libc6 (>= 2.34)
Section: httpd
Priority: optional
Description: HTTP sessions for nginx (ngx_http_sessions_module)
 Server-side sessions kept in nginx shared memory, identified by signed
 cookies and validated in the access phase, with directives mirroring
 BunkerWeb's Sessions settings. Built for nginx $nginx_version.
CONTROL
# As Debian's own module packages: enabled on install, disabled on removal.
cat > "$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    mkdir -p /etc/nginx/modules-enabled
    ln -sf /usr/share/nginx/modules-available/mod-http-sessions.conf \
        /etc/nginx/modules-enabled/50-mod-http-sessions.conf
fi
POSTINST
cat > "$root/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ "$1" = remove ] || [ "$1" = purge ]; then
    rm -f /etc/nginx/modules-enabled/50-mod-http-sessions.conf
fi
POSTRM
chmod 755 "$root/DEBIAN/postinst" "$root/DEBIAN/postrm"

out="$work/${pkg}_${version}-1_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$out" >/dev/null
echo "$out (nginx $nginx_version, depends on $abi)"
