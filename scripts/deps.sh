#!/usr/bin/env bash
# Checks that the Debian packages the build and tests need are installed;
# installs the missing ones when run as root, otherwise says what to run.
set -euo pipefail

packages=(gcc make pkg-config libclang-dev libpcre2-dev libssl-dev zlib1g-dev curl openssl redis-server redis-tools nghttp2-client python3 python3-prometheus-client python3-jwt python3-cryptography nodejs)
# `scripts/deps.sh bench` adds the load generators and profilers.
case "${1:-}" in
  bench) packages+=(python3 wrk nghttp2-client valgrind util-linux procps) ;;
  deb) packages+=(nginx nginx-dev dpkg-dev debhelper binutils python3) ;;
  plugin) packages+=(python3 python3-venv) ;;
  browser) packages+=(python3 chromium chromium-driver) ;;
esac
missing=()
for p in "${packages[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
if ! command -v cargo >/dev/null; then
  echo "cargo is not on PATH: install Rust (rustup) first" >&2
  exit 1
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "missing packages: ${missing[*]}" >&2
  echo "run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
