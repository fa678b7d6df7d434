#!/usr/bin/env bash
# Prints the path of the nginx binary the vendored build made for a profile.
set -euo pipefail
profile=${1:-release}
bin=$(ls -t target/"$profile"/build/nginx-sys-*/out/objs/nginx 2>/dev/null | sed -n 1p)
if [ -z "$bin" ]; then
  echo "no vendored nginx under target/$profile: run 'make' first" >&2
  exit 1
fi
echo "$bin"
