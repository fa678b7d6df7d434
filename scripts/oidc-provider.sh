#!/usr/bin/env bash
# Installs the tests' OpenID Provider, oidc-provider 9 from the npm
# registry, into target/oidc-provider (once), next to its start script
# (tests/oidc/provider.mjs). It needs Node.js 20 or newer with npm.
set -euo pipefail
dir=target/oidc-provider
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "node and npm are missing: apt-get install nodejs (Node.js 20 or newer, with npm)" >&2
  exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "Node.js $(node --version) is too old for oidc-provider 9: 20 or newer is needed" >&2
  exit 1
fi
mkdir -p "$dir"
cp tests/oidc/provider.mjs "$dir/provider.mjs"
if [ ! -f "$dir/node_modules/oidc-provider/package.json" ]; then
  echo '{"private": true, "type": "module"}' > "$dir/package.json"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error oidc-provider@9 >/dev/null
fi
