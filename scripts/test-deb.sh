#!/usr/bin/env bash
# `make deb-test`: builds the .deb, then checks it behaves as Debian's own
# libnginx-mod-* packages (dh_nginx) under dpkg: enabled on a fresh install,
# left disabled on upgrade when the admin disabled it, the nginx-reload
# trigger, the link renamed to .removed on remove and restored on reinstall,
# Depends covering every library the .so links, a changelog. Then runs the
# scenario suites against /usr/sbin/nginx with the installed module. Root.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "deb-test installs packages: run it as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive

pkg=libnginx-mod-http-sessions
so=/usr/lib/nginx/modules/ngx_http_sessions_module.so
link=/etc/nginx/modules-enabled/50-mod-http-sessions.conf
available=/usr/share/nginx/modules-available/mod-http-sessions.conf
fail() { echo "deb-test: $*" >&2; exit 1; }
install_deb() { apt-get install -y --reinstall "$deb" 2>&1 | tee target/deb/apt.log; }

# DEB=path tests a package built already.
deb=${DEB:-$(scripts/build-deb.sh | tail -n 1 | cut -d' ' -f1)}
version=$(dpkg-deb -f "$deb" Version)

# A fresh install: enabled, and nginx asked to reload through its trigger.
apt-get purge -y -qq "$pkg" > /dev/null 2>&1 || true
rm -f "$link" "$link.removed"
install_deb > /dev/null
test -f "$so" || fail "missing $so"
test "$(readlink "$link")" = "$available" || fail "a fresh install did not enable the module ($link)"
grep -q "Processing triggers for nginx" target/deb/apt.log || fail "no nginx-reload trigger on install"
/usr/sbin/nginx -t -q || fail "Debian's nginx.conf does not load the module"

# Depends names the package of every library the module links.
depends=$(dpkg-deb -f "$deb" Depends)
for lib in $(objdump -p "$so" | awk '$1 == "NEEDED" { print $2 }'); do
  path=$(ldconfig -p | awk -v l="$lib" '!p && $1 == l { p = $NF } END { print p }')
  [ -n "$path" ] || fail "cannot find $lib"
  owner=
  # With merged /usr, dpkg knows a library by one of its two paths.
  for p in "$path" "$(readlink -f "$path")"; do
    owner=$(dpkg -S "$p" 2>/dev/null | cut -d: -f1 | head -n 1) || true
    [ -z "$owner" ] || break
  done
  [ -n "$owner" ] || fail "no package owns $lib"
  grep -q "^ *$owner\b" <<< "${depends//,/$'\n'}" || fail "$lib is in $owner, missing from Depends: $depends"
done
grep -q "nginx-abi-" <<< "$depends" || fail "no nginx-abi dependency: $depends"

# A Debian changelog for this very version.
changelog=/usr/share/doc/$pkg/changelog.Debian.gz
test -f "$changelog" || fail "missing $changelog"
[[ "$(zcat "$changelog" | sed -n 1p)" == *"($version)"* ]] || fail "changelog does not start at $version"

# The admin disables the module: an upgrade (here a reinstall) keeps it off.
rm "$link"
install_deb > /dev/null
test ! -e "$link" || fail "an upgrade re-enabled a module the admin disabled"
ln -s "$available" "$link"

# Remove renames the link the Debian way; nginx still starts; reinstall restores it.
apt-get remove -y "$pkg" > target/deb/apt.log 2>&1 || { cat target/deb/apt.log; fail "remove failed"; }
test -L "$link.removed" || fail "remove did not rename $link to .removed"
test ! -e "$link" || fail "remove left $link"
grep -q "Processing triggers for nginx" target/deb/apt.log || fail "no nginx-reload trigger on remove"
/usr/sbin/nginx -t -q || fail "nginx -t fails once the module is removed"
install_deb > /dev/null
test "$(readlink "$link")" = "$available" || fail "reinstalling after remove did not enable the module"
test ! -e "$link.removed" || fail "reinstalling left $link.removed"

# Purge leaves nothing behind; the suites then run on a fresh install.
apt-get purge -y -qq "$pkg" > /dev/null
test ! -e "$link" && test ! -e "$link.removed" || fail "purge left a modules-enabled link"
install_deb > /dev/null
/usr/sbin/nginx -t
/usr/sbin/nginx -v
echo "deb-test: package behaves as Debian's module packages ($depends)"

NGINX_BIN=/usr/sbin/nginx SESSIONS_MODULE="$so" \
  cargo test --release --test sessions --test sessions_redis -- --test-threads=8
