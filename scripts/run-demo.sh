#!/usr/bin/env bash
# `make run`: serves nginx-conf/demo.conf on http://127.0.0.1:8080/ in the
# foreground (Ctrl-C stops). Workers never run as root: started as root,
# nginx serves a copy of the demo from a fresh /tmp/ngx-sessions-demo.XXXXXX
# (a checkout under /root is not readable by others) with workers as
# nobody:nogroup; started as a user, the workers are that user.
set -euo pipefail
cd "$(dirname "$0")/.."

nginx=$PWD/$(scripts/nginx-bin.sh)
prefix=$PWD
user=
mkdir -p .run
# The previous root run's copy and pid link.
if [ -L .run/nginx.pid ]; then
  old=$(readlink .run/nginx.pid)
  case "$old" in /tmp/ngx-sessions-demo.*/.run/nginx.pid) rm -rf "${old%/.run/nginx.pid}" ;; esac
  rm -f .run/nginx.pid
fi
if [ "$(id -u)" -eq 0 ]; then
  # mktemp: a name nobody could have prepared (a link planted in /tmp).
  prefix=$(mktemp -d /tmp/ngx-sessions-demo.XXXXXX)
  mkdir -p "$prefix/target/release" "$prefix/.run"
  cp -r nginx-conf "$prefix/"
  cp target/release/libngx_http_sessions_module.so "$prefix/target/release/"
  chmod -R a+rX "$prefix"
  # The pid where `make run`'s callers look for it.
  ln -sfn "$prefix/.run/nginx.pid" .run/nginx.pid
  user="user nobody nogroup;"
fi
echo "ngx-sessions demo on http://127.0.0.1:8080/ (Ctrl-C to stop)"
exec "$nginx" -p "$prefix" -c nginx-conf/demo.conf -e "$prefix/.run/error.log" -g "daemon off; $user"
