#!/bin/sh
# Adds ngx_http_sessions_module's load_module line to BunkerWeb's nginx.conf
# template, once, and only if BunkerWeb's nginx accepts the module (the .so
# must be built for that very nginx version and configure signature). Run it
# as root after installing the .so and again after each BunkerWeb upgrade,
# which overwrites the template; then reload BunkerWeb.
#
#   load-module.sh [MODULE]   (default /usr/share/bunkerweb/modules/ngx_http_sessions_module.so)
#
# NGINX_BIN and TEMPLATE name another nginx binary and template (for tests).
set -eu

module=${1:-/usr/share/bunkerweb/modules/ngx_http_sessions_module.so}
nginx=${NGINX_BIN:-nginx}
template=${TEMPLATE:-/usr/share/bunkerweb/confs/nginx.conf}

case "$module" in
  /*) ;;
  *) echo "load-module.sh: give the module's absolute path" >&2; exit 2 ;;
esac
[ -f "$template" ] || { echo "load-module.sh: no BunkerWeb template at $template" >&2; exit 1; }
[ -f "$module" ] || { echo "load-module.sh: no module at $module" >&2; exit 1; }

if grep -q "^[[:space:]]*load_module[[:space:]].*ngx_http_sessions_module\.so;" "$template"; then
  echo "load-module.sh: $template already loads the module"
  exit 0
fi

# nginx itself says whether it can load this .so: a stale build (another
# nginx version) is refused here instead of breaking BunkerWeb's next reload.
probe=$(mktemp)
trap 'rm -f "$probe" "$probe.pid" "$template.ngx-sessions.tmp"' EXIT
printf 'load_module %s;\nevents {}\n' "$module" > "$probe"
if ! out=$("$nginx" -t -q -e stderr -c "$probe" -g "pid $probe.pid;" 2>&1); then
  echo "load-module.sh: this nginx cannot load $module; rebuild it for $("$nginx" -v 2>&1 | sed 's/^nginx version: //'):" >&2
  echo "$out" >&2
  exit 1
fi

# After the template's last load_module line outside Jinja blocks (the
# template loads some modules only {% if %} they exist), where nginx wants it.
awk -v line="load_module $module;" '
  {
    lines[NR] = $0
    s = $0; opened = gsub(/\{%[-+]?[[:space:]]*(if|for)[[:space:]]/, "", s)
    s = $0; closed = gsub(/\{%[-+]?[[:space:]]*end(if|for)[[:space:]-+%]/, "", s)
    if (depth == 0 && opened == 0 && $0 ~ /^[[:space:]]*load_module[[:space:]]/) last = NR
    depth += opened - closed
  }
  END {
    if (!last) print line
    for (i = 1; i <= NR; i++) { print lines[i]; if (i == last) print line }
  }' "$template" > "$template.ngx-sessions.tmp"
chmod --reference="$template" "$template.ngx-sessions.tmp" 2>/dev/null || true
mv "$template.ngx-sessions.tmp" "$template"
echo "load-module.sh: $template now loads $module; reload BunkerWeb"
