#!/usr/bin/env bash
# `make plugin-test`: the BunkerWeb plugin tests, with Jinja2 from PyPI in a
# virtual environment under target/.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/venv
if [ ! -x "$venv/bin/python" ]; then
  /usr/bin/python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check jinja2
"$venv/bin/python" -m unittest discover -s bunkerweb/tests -v
