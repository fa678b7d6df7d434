"""Tests of the BunkerWeb plugin: plugin.json against BunkerWeb's rules, and
the Jinja templates rendered, checked by `nginx -t` and served by a real
nginx with the module loaded.

Environment: NGINX_BIN and SESSIONS_MODULE (as for the Rust suite); by
default the vendored nginx and target/release's module.
"""

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

import jinja2

PLUGIN = Path(__file__).resolve().parent.parent
ROOT = PLUGIN.parent

# BunkerWeb's rules for external plugins (bunkerweb-plugins, core plugin.json schema).
PLUGIN_ID = re.compile(r"^[\w.-]{1,64}$")
VERSION = re.compile(r"^\d+\.\d+(\.\d+)?$")
SETTING_NAME = re.compile(r"^[A-Z0-9_]{1,256}$")
TYPES = {"password", "text", "number", "file", "check", "select", "multiselect", "multivalue"}
CONTEXTS = {"global", "multisite"}

# What BunkerWeb 1.6's core Sessions plugin declares (shared/ANCHORS.md).
BUNKERWEB_SESSIONS = {
    "SESSIONS_SECRET": ("random", "global", "password", r"^.+$"),
    "SESSIONS_NAME": ("random", "global", "text", r"^[a-zA-Z0-9_-]+$"),
    "SESSIONS_DOMAIN": ("", "multisite", "text", None),
    "SESSIONS_IDLING_TIMEOUT": ("1800", "global", "number", r"^\d+$"),
    "SESSIONS_ROLLING_TIMEOUT": ("3600", "global", "number", r"^\d+$"),
    "SESSIONS_ABSOLUTE_TIMEOUT": ("86400", "global", "number", r"^\d+$"),
    "SESSIONS_CHECK_IP": ("yes", "global", "check", r"^(yes|no)$"),
    "SESSIONS_CHECK_USER_AGENT": ("yes", "global", "check", r"^(yes|no)$"),
}


def nginx_bin():
    if os.environ.get("NGINX_BIN"):
        return os.environ["NGINX_BIN"]
    out = subprocess.run([str(ROOT / "scripts" / "nginx-bin.sh")], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return str(ROOT / out.stdout.strip())


def module_path():
    return os.environ.get("SESSIONS_MODULE") or str(ROOT / "target" / "release" / "libngx_http_sessions_module.so")


def load_plugin():
    return json.loads((PLUGIN / "plugin.json").read_text())


def defaults():
    return {name: s["default"] for name, s in load_plugin()["settings"].items()}


def enabled():
    """The defaults, with the plugin switched on for the server."""
    return {**defaults(), "USE_NGX_SESSIONS": "yes"}


def render(kind, values):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(PLUGIN / "confs")), undefined=jinja2.StrictUndefined)
    return env.get_template(f"{kind}/ngxsessions.conf").render(**values)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, why):
    """Waits until `proc` listens on `port`; fails with `why()` if it dies or takes 10 s."""
    deadline = time.time() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                raise AssertionError(why())
            time.sleep(0.05)


class Nginx:
    """nginx with the rendered plugin configuration: the http template in
    `http`, the server-http template inside each server, as BunkerWeb does."""

    def __init__(self, globals_, servers):
        self.dir = Path(tempfile.mkdtemp(prefix="bw-plugin-", dir=ROOT / "target"))
        (self.dir / "logs").mkdir()
        (self.dir / "html").mkdir()
        (self.dir / "html" / "index.html").write_text("hello\n")
        self.ports = []
        blocks = []
        for values in servers:
            port = free_port()
            self.ports.append(port)
            blocks.append(
                f"server {{\n listen 127.0.0.1:{port};\n root html;\n"
                f" add_header X-Session-Status $session_status always;\n"
                f"{render('server-http', {**globals_, **values})}\n}}"
            )
        user = "user root root;" if os.geteuid() == 0 else ""
        self.conf = (
            f"load_module {module_path()};\n{user}\nworker_processes 1;\n"
            "error_log logs/error.log info;\npid logs/nginx.pid;\nevents { worker_connections 64; }\n"
            "http {\n access_log off;\n client_body_temp_path tmp_body; proxy_temp_path tmp_proxy;\n"
            " fastcgi_temp_path tmp_fcgi; uwsgi_temp_path tmp_uwsgi; scgi_temp_path tmp_scgi;\n"
            f" sessions_zone bw:1m;\n{render('http', globals_)}\n" + "\n".join(blocks) + "\n}\n"
        )
        (self.dir / "nginx.conf").write_text(self.conf)
        self.proc = None

    def cmd(self, *extra):
        return [nginx_bin(), "-p", str(self.dir), "-c", "nginx.conf", "-e", "logs/error.log", *extra]

    def test(self):
        return subprocess.run(self.cmd("-t"), capture_output=True, text=True)

    def start(self):
        self.proc = subprocess.Popen(self.cmd("-g", "daemon off;"), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        for port in self.ports:
            wait_port(port, self.proc, lambda: (self.dir / "logs" / "error.log").read_text())
        return self

    def get(self, server, cookie=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.ports[server], timeout=10)
        conn.request("GET", "/", headers={"Cookie": cookie} if cookie else {})
        r = conn.getresponse()
        r.read()
        conn.close()
        return r

    def stop(self, keep=False):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


class PluginJson(unittest.TestCase):
    def test_plugin_fields_follow_bunkerweb_rules(self):
        p = load_plugin()
        self.assertRegex(p["id"], PLUGIN_ID)
        self.assertTrue(p["name"] and p["description"])
        self.assertRegex(p["version"], VERSION)
        self.assertIn(p["stream"], {"yes", "no", "partial"})

    def test_every_setting_follows_bunkerweb_rules(self):
        settings = load_plugin()["settings"]
        self.assertTrue(settings)
        ids = set()
        for name, s in settings.items():
            with self.subTest(setting=name):
                self.assertRegex(name, SETTING_NAME)
                for key in ("context", "default", "help", "id", "label", "regex", "type"):
                    self.assertIn(key, s)
                self.assertIn(s["context"], CONTEXTS)
                self.assertIn(s["type"], TYPES)
                self.assertTrue(re.search(s["regex"], s["default"]), "the default matches its own regex")
                self.assertNotIn(s["id"], ids, "setting ids are unique")
                ids.add(s["id"])

    def test_sessions_settings_mirror_bunkerweb(self):
        settings = load_plugin()["settings"]
        for name, (default, context, type_, regex) in BUNKERWEB_SESSIONS.items():
            with self.subTest(setting=name):
                s = settings[name]
                self.assertEqual((s["default"], s["context"], s["type"]), (default, context, type_))
                self.assertEqual(s["id"], name.lower().replace("_", "-"))
                if regex:
                    self.assertEqual(s["regex"], regex)

    def test_domain_regex_accepts_hosts_and_refuses_injection(self):
        regex = load_plugin()["settings"]["SESSIONS_DOMAIN"]["regex"]
        for ok in ("", "example.com", ".example.com", "a-b.c_d.example"):
            self.assertTrue(re.search(regex, ok), ok)
        for bad in ("a b", "a;b", "example.com; add_header X 1", "{x}"):
            self.assertFalse(re.search(regex, bad), bad)


class Templates(unittest.TestCase):
    def test_defaults_render_to_directives(self):
        http_conf = render("http", defaults())
        for line in ('sessions_secret "random";', "sessions_name random;", "sessions_idling_timeout 1800;",
                     "sessions_rolling_timeout 3600;", "sessions_absolute_timeout 86400;",
                     "sessions_check_ip on;", "sessions_check_user_agent on;"):
            self.assertIn(line, http_conf)
        # Off until switched on, as BunkerWeb's official plugins.
        self.assertIn("sessions off;", render("server-http", defaults()))
        server_conf = render("server-http", enabled())
        self.assertIn("sessions on;", server_conf)
        self.assertNotIn("sessions_cookie_domain", server_conf)

    def test_defaults_pass_nginx_t_and_serve_sessions(self):
        n = Nginx(enabled(), [{}])
        try:
            t = n.test()
            self.assertEqual(t.returncode, 0, t.stderr)
            n.start()
            r = n.get(0)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.getheader("X-Session-Status"), "new")
            name, value = r.getheader("Set-Cookie").split(";")[0].split("=", 1)
            self.assertRegex(name, r"^[0-9A-Za-z]{16}$", "random name")
            self.assertEqual(n.get(0, f"{name}={value}").getheader("X-Session-Status"), "valid")
        finally:
            n.stop()

    def test_multisite_values_reach_each_server(self):
        globals_ = {
            **defaults(),
            "SESSIONS_SECRET": 'se"cr\\et; with "quotes"',
            "SESSIONS_NAME": "bw_session",
            "SESSIONS_IDLING_TIMEOUT": "1",
            "SESSIONS_ROLLING_TIMEOUT": "0",
            "SESSIONS_ABSOLUTE_TIMEOUT": "0",
            "SESSIONS_CHECK_USER_AGENT": "no",
        }
        servers = [
            {"USE_NGX_SESSIONS": "yes", "SESSIONS_DOMAIN": "app.example.com"},
            {"USE_NGX_SESSIONS": "no", "SESSIONS_DOMAIN": ""},
        ]
        n = Nginx(globals_, servers)
        try:
            t = n.test()
            self.assertEqual(t.returncode, 0, t.stderr + n.conf)
            self.assertIn("sessions_check_user_agent off;", n.conf)
            n.start()
            r = n.get(0)
            set_cookie = r.getheader("Set-Cookie")
            self.assertTrue(set_cookie.startswith("bw_session=v1."), set_cookie)
            self.assertIn("Domain=app.example.com", set_cookie)
            cookie = set_cookie.split(";")[0]
            self.assertEqual(n.get(0, cookie).getheader("X-Session-Status"), "valid")
            # The rendered idling timeout (1 s) is the one in force.
            time.sleep(1.6)
            self.assertEqual(n.get(0, cookie).getheader("X-Session-Status"), "expired_idle")
            # The second server has sessions off.
            r = n.get(1)
            self.assertEqual(r.status, 200)
            self.assertIsNone(r.getheader("Set-Cookie"))
        finally:
            n.stop()

    def test_bunkerweb_redis_settings_store_sessions_in_redis(self):
        port = free_port()
        work = Path(tempfile.mkdtemp(prefix="bw-redis-", dir=ROOT / "target"))
        redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                  "--requirepass", "bw-pass", "--dir", str(work)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port, redis, lambda: "redis-server did not start")
        # BunkerWeb's core Redis settings with their defaults, pointed at it.
        values = {**enabled(), "USE_REDIS": "yes", "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(port),
                  "REDIS_DATABASE": "2", "REDIS_SSL": "no", "REDIS_SSL_VERIFY": "yes", "REDIS_TIMEOUT": "1000",
                  "REDIS_USERNAME": "", "REDIS_PASSWORD": "bw-pass", "REDIS_SENTINEL_HOSTS": "",
                  "REDIS_SENTINEL_USERNAME": "", "REDIS_SENTINEL_PASSWORD": "", "REDIS_SENTINEL_MASTER": "",
                  "REDIS_KEEPALIVE_POOL": "10"}
        rendered = render("http", values)
        for line in ("sessions_store redis;", f"sessions_redis_server 127.0.0.1:{port};",
                     "sessions_redis_database 2;", "sessions_redis_timeout 1000ms;",
                     "sessions_redis_connections 10;", 'sessions_redis_password "bw-pass";'):
            self.assertIn(line, rendered)
        sentinel = render("http", {**values, "REDIS_SENTINEL_HOSTS": "10.0.0.1 10.0.0.2:26380",
                                   "REDIS_SENTINEL_MASTER": "bw"})
        self.assertIn("sessions_redis_sentinel 10.0.0.1 10.0.0.2:26380;", sentinel)
        self.assertIn('sessions_redis_sentinel_master "bw";', sentinel)
        self.assertIn("sessions_redis_server [::1]:6379;", render("http", {**values, "REDIS_HOST": "::1",
                                                                           "REDIS_PORT": "6379"}))
        # BunkerWeb allows a keepalive pool of 0: still one connection, which nginx -t accepts.
        self.assertIn("sessions_redis_connections 1;", render("http", {**values, "REDIS_KEEPALIVE_POOL": "0"}))
        self.assertIn("sessions_redis_connections 64;", render("http", {**values, "REDIS_KEEPALIVE_POOL": "500"}))
        zero = Nginx({**values, "REDIS_KEEPALIVE_POOL": "0"}, [{}])
        try:
            t = zero.test()
            self.assertEqual(t.returncode, 0, t.stderr)
        finally:
            zero.stop()
        n = Nginx(values, [{}])
        try:
            t = n.test()
            self.assertEqual(t.returncode, 0, t.stderr)
            n.start()
            r = n.get(0)
            self.assertEqual(r.getheader("X-Session-Status"), "new", (n.dir / "logs" / "error.log").read_text())
            cookie = r.getheader("Set-Cookie").split(";")[0]
            self.assertEqual(n.get(0, cookie).getheader("X-Session-Status"), "valid")
            keys = subprocess.run(["redis-cli", "-p", str(port), "--no-auth-warning", "-a", "bw-pass", "-n", "2",
                                   "--scan", "--pattern", "sessions:*"], capture_output=True, text=True).stdout
            # The session, and the random secret and name shared through Redis.
            self.assertEqual(len(keys.split()), 3, keys)
        finally:
            n.stop()
            redis.kill()
            redis.wait()
            shutil.rmtree(work, ignore_errors=True)

    def test_secret_with_quotes_is_one_argument(self):
        values = {**defaults(), "SESSIONS_SECRET": 'a"b\\c; sessions off'}
        rendered = render("http", values)
        self.assertIn('sessions_secret "a\\"b\\\\c; sessions off";', rendered)


if __name__ == "__main__":
    unittest.main()
