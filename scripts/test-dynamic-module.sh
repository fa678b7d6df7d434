#!/usr/bin/env bash
# `make dynamic-module-test`: builds the module inside nginx's own build
# system (./configure --add-dynamic-module=. && make modules), from the
# vendored nginx source, then runs the scenario suite with that .so loaded
# into the vendored nginx binary.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

manifest=$(cargo metadata --format-version 1 --locked 2>/dev/null \
  | python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "nginx-src"))')
src=$(dirname "$manifest")/nginx
work=$repo/target/dynamic-module
rm -rf "$work"
mkdir -p "$work"
cp -a "$src" "$work/nginx"

cd "$work/nginx"
# The flags of the vendored build, so the module's signature matches its nginx.
auto/configure --with-compat --with-http_realip_module --with-http_ssl_module --with-http_v2_module \
  --with-stream --with-stream_realip_module --with-stream_ssl_module --with-threads \
  --add-dynamic-module="$repo" > "$work/configure.log"
make -j"$(nproc)" modules > "$work/make.log" 2>&1 || { tail -40 "$work/make.log"; exit 1; }
so=$work/nginx/objs/ngx_http_sessions_module.so
test -f "$so"
echo "built $so"

cd "$repo"
SESSIONS_MODULE="$so" cargo test --release --test sessions --test sessions_redis -- --test-threads=8
