#!/usr/bin/env bash
# `make deb-test`: builds the .deb, installs it with Debian's nginx, checks
# that the packaged configuration loads it, and runs the scenario suite
# against /usr/sbin/nginx with the installed module. Needs root (apt).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "deb-test installs packages: run it as root" >&2
  exit 1
fi

deb=$(scripts/build-deb.sh | tail -n 1 | cut -d' ' -f1)
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --reinstall "$deb" > /dev/null

so=/usr/lib/nginx/modules/ngx_http_sessions_module.so
link=/etc/nginx/modules-enabled/50-mod-http-sessions.conf
test -f "$so" || { echo "missing $so" >&2; exit 1; }
test "$(readlink "$link")" = /usr/share/nginx/modules-available/mod-http-sessions.conf \
  || { echo "missing or wrong $link" >&2; exit 1; }
# Debian's own nginx.conf includes modules-enabled: the module must load there.
/usr/sbin/nginx -t
/usr/sbin/nginx -v

NGINX_BIN=/usr/sbin/nginx SESSIONS_MODULE="$so" \
  cargo test --release --test sessions --test sessions_redis -- --test-threads=8
