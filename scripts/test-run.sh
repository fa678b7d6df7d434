#!/usr/bin/env bash
# `make run-test`: starts `make run` as a newcomer would, then checks the
# demo from outside: the page and its session, that no worker runs as root,
# a login by POST and a logout. Stops it again.
set -euo pipefail
cd "$(dirname "$0")/.."

mkdir -p target
log=target/run-test.log
make run > "$log" 2>&1 &
run_pid=$!
jar=$(mktemp)
stop() {
  kill -QUIT "$(cat .run/nginx.pid 2>/dev/null)" 2>/dev/null || kill "$run_pid" 2>/dev/null || true
  wait "$run_pid" 2>/dev/null || true
  rm -f "$jar"
}
trap stop EXIT
fail() { echo "run-test: $*" >&2; cat "$log" >&2; exit 1; }

base=http://127.0.0.1:8080
for _ in $(seq 1 100); do
  curl -fsS "$base/" -o target/run-test.html -c "$jar" -b "$jar" 2>/dev/null && break
  sleep 0.2
done
grep -q 'id="status" class="badge new">new<' target/run-test.html || fail "make run did not serve the demo page"

master=$(cat .run/nginx.pid)
workers=$(ps -o user= --ppid "$master" | sort -u | tr '\n' ' ')
[ -n "$workers" ] || fail "no worker processes"
case " $workers" in *" root "*) fail "workers run as root ($workers)" ;; esac

code=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' -c "$jar" -b "$jar" \
  --data 'user=newcomer&password=demo' "$base/login/check")
[ "$code" = "303 $base/private/" ] || fail "login by POST answered $code"
curl -fsS -b "$jar" "$base/private/" | grep -q '<span id="user">newcomer</span>' || fail "the private page does not greet the user"
curl -fsS -b "$jar" -c "$jar" -L "$base/logout" | grep -q "You are logged out." || fail "logout does not say so"
echo "make run: demo served, workers as $workers, login by POST and logout work"
