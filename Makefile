# ngx-sessions: `make run` shows the module in a real nginx, `make test` tests it.

CARGO   ?= cargo
PROFILE := release
MODULE  := target/$(PROFILE)/libngx_http_sessions_module.so
RUN_DIR := .run

.PHONY: all build deps run run-test test unittest itest chaos check bench deb deb-test dynamic-module-test plugin-test browser-test clean

all: build

deps:
	@scripts/deps.sh

# The module and the vendored nginx 1.28 it is tested with.
build: deps
	$(CARGO) build --release

# Serves nginx-conf/demo.conf on http://127.0.0.1:8080/ in the foreground
# (Ctrl-C stops); workers never run as root (see scripts/run-demo.sh).
run: build
	exec scripts/run-demo.sh

# Starts `make run` and checks the demo from outside (scripts/test-run.sh).
run-test: build
	scripts/test-run.sh

# Unit tests of the pure logic, then the integration suite against real
# nginx (and a real OpenID Provider, oidc-provider from npm).
test: build
	scripts/oidc-provider.sh
	$(CARGO) test --release --workspace -- --test-threads=8

unittest:
	$(CARGO) test --release -p sessions-core

itest: build
	$(CARGO) test --release --test '*' -- --test-threads=8

# The Redis fault suite: each fault under steady load against real
# redis-server, Sentinel and Cluster processes; prints one table, fails on
# any loss (see tests/chaos/chaos.py).
chaos: build
	python3 tests/chaos/chaos.py

# Throughput, latency and instructions per request; see BENCHMARKS.md.
bench: build
	@scripts/deps.sh bench
	scripts/oidc-provider.sh
	python3 bench/bench.py

# libnginx-mod-http-sessions_*.deb for Debian 12's nginx 1.22 (target/deb/).
deb: deps
	@scripts/deps.sh deb
	scripts/build-deb.sh

# Installs that .deb with Debian's nginx and runs the scenario suite on /usr/sbin/nginx (root).
deb-test: build
	@scripts/deps.sh deb
	scripts/test-deb.sh

# Builds the module with nginx's ./configure --add-dynamic-module and tests that .so.
dynamic-module-test: build
	scripts/test-dynamic-module.sh

# plugin.json rules and the Jinja templates of the BunkerWeb plugin (bunkerweb/).
plugin-test: build
	@scripts/deps.sh plugin
	scripts/test-plugin.sh

# The demo's login flow in a real headless Chromium (Debian's chromium and chromium-driver).
browser-test: build
	@scripts/deps.sh browser
	scripts/oidc-provider.sh
	python3 tests/browser/login_flow.py
	python3 tests/browser/oidc_flow.py

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf $(RUN_DIR)
