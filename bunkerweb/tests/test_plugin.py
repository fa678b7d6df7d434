"""Tests of the BunkerWeb plugin: plugin.json against BunkerWeb's rules, and
the Jinja templates rendered, checked by `nginx -t` and served by a real
nginx with the module loaded.

Environment: NGINX_BIN and SESSIONS_MODULE (as for the Rust suite); by
default the vendored nginx and target/release's module.
"""

import http.client
import importlib
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

# What BunkerWeb 1.6.13's core plugins declare (src/common/core/sessions and
# redis, plugin.json): name -> (id, default, context, type, regex). The plugin
# reads these and must not declare them again.
CORE_SESSIONS = {
    "SESSIONS_SECRET": ("session-secret", "random", "global", "password", r"^.+$"),
    "SESSIONS_NAME": ("sessions-name", "random", "global", "text", r"^[a-zA-Z0-9_-]+$"),
    "SESSIONS_DOMAIN": ("sessions-domain", "", "multisite", "text", None),
    "SESSIONS_IDLING_TIMEOUT": ("sessions-idling-timeout", "1800", "global", "number", r"^\d+$"),
    "SESSIONS_ROLLING_TIMEOUT": ("sessions-rolling-timeout", "3600", "global", "number", r"^\d+$"),
    "SESSIONS_ABSOLUTE_TIMEOUT": ("sessions-absolute-timeout", "86400", "global", "number", r"^\d+$"),
    "SESSIONS_CHECK_IP": ("sessions-check-ip", "yes", "global", "check", r"^(yes|no)$"),
    "SESSIONS_CHECK_USER_AGENT": ("sessions-user-agent", "yes", "global", "check", r"^(yes|no)$"),
}
CORE_REDIS = {
    "USE_REDIS": "no", "REDIS_HOST": "", "REDIS_PORT": "6379", "REDIS_DATABASE": "0", "REDIS_SSL": "no",
    "REDIS_SSL_VERIFY": "no", "REDIS_TIMEOUT": "1000", "REDIS_USERNAME": "", "REDIS_PASSWORD": "",
    "REDIS_SENTINEL_HOSTS": "", "REDIS_SENTINEL_USERNAME": "", "REDIS_SENTINEL_PASSWORD": "",
    "REDIS_SENTINEL_MASTER": "", "REDIS_KEEPALIVE_IDLE": "30000", "REDIS_KEEPALIVE_POOL": "10",
}
# The template BunkerWeb renders nginx.conf from; the plugin reads it to know
# whether the module is loaded.
BW_NGINX_TEMPLATE = "/usr/share/bunkerweb/confs/nginx.conf"


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
    """BunkerWeb's configuration with every setting at its default: the core
    Sessions and Redis plugins', and this plugin's."""
    core = {name: d[1] for name, d in CORE_SESSIONS.items()}
    own = {name: s["default"] for name, s in load_plugin()["settings"].items()}
    return {**core, **CORE_REDIS, **own}


def enabled():
    """The defaults, with the plugin switched on for the server."""
    return {**defaults(), "USE_NGX_SESSIONS": "yes"}


def bunkerweb_undefined(default_config):
    """An Undefined like BunkerWeb's Templator's: a name missing from the
    rendered values takes its default. A name BunkerWeb does not know is a
    bug in the template here (BunkerWeb would render it as empty)."""

    class Undefined(jinja2.Undefined):
        def _default(self):
            if self._undefined_name not in default_config:
                raise AssertionError(f"the template reads {self._undefined_name!r}, which BunkerWeb does not define")
            return default_config[self._undefined_name]

        def __str__(self):
            return str(self._default())

        def __eq__(self, other):
            return self._default() == other

        def __ne__(self, other):
            return self._default() != other

        def __bool__(self):
            return bool(self._default().strip())

        def __contains__(self, item):
            return item in self._default()

        def __getattr__(self, name):
            if name.startswith("_"):
                raise AttributeError(name)
            return getattr(self._default(), name)

        __hash__ = jinja2.Undefined.__hash__

    return Undefined


def render(kind, values, template_lines=None, default_config=None):
    """Renders a template as BunkerWeb 1.6.13's Templator does: trim_blocks,
    lstrip_blocks, keep_trailing_newline, its undefined handling and helpers,
    the values that differ from their defaults as variables, plus `all`. `template_lines` stands for the lines
    of BunkerWeb's nginx.conf template (None: it loads the module)."""
    if template_lines is None:
        template_lines = [f"load_module {module_path()};"]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(PLUGIN / "confs")),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=bunkerweb_undefined(default_config if default_config is not None else defaults()),
    )

    def read_lines(path):
        assert path == BW_NGINX_TEMPLATE, path
        return list(template_lines)

    # With its database, BunkerWeb passes only the settings that differ from
    # their defaults; the Undefined above supplies the rest.
    default_config = default_config if default_config is not None else defaults()
    changed = {k: v for k, v in values.items() if default_config.get(k) != v}
    helpers = {"read_lines": read_lines, "import": importlib.import_module, "all": dict(values)}
    return env.get_template(f"{kind}/ngxsessions.conf").render({**helpers, **changed})


def directives(conf):
    """The directive lines of a rendered file: one per line, no comments."""
    lines = [line.strip() for line in conf.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


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
    """nginx with the rendered plugin configuration, as BunkerWeb lays it out:
    the http template in `http`, the server-http template in each server
    (rendered with that server's values), each server proxying to a backend
    that answers with the Cookie header it received. `loaded`: whether
    BunkerWeb's nginx.conf template (and so nginx.conf) loads the module."""

    def __init__(self, globals_, servers, loaded=True):
        self.dir = Path(tempfile.mkdtemp(prefix="bw-plugin-", dir=ROOT / "target"))
        (self.dir / "logs").mkdir()
        template = [f"load_module {module_path()};"] if loaded else []
        self.http = render("http", globals_, template)
        self.ports = []
        self.backend = free_port()
        blocks = [
            f"server {{\n listen 127.0.0.1:{self.backend};\n"
            f" location / {{ return 200 \"cookie=[$http_cookie]\"; }}\n}}"
        ]
        status = " add_header X-Session-Status $session_status always;\n" if loaded else ""
        for values in servers:
            port = free_port()
            self.ports.append(port)
            blocks.append(
                f"server {{\n listen 127.0.0.1:{port};\n{status}"
                f"{render('server-http', {**globals_, **values}, template)}"
                f" location / {{ proxy_pass http://127.0.0.1:{self.backend}; }}\n}}"
            )
        user = "user root root;" if os.geteuid() == 0 else ""
        load = f"load_module {module_path()};\n" if loaded else ""
        self.conf = (
            f"{load}{user}\nworker_processes 1;\n"
            "error_log logs/error.log info;\npid logs/nginx.pid;\nevents { worker_connections 64; }\n"
            "http {\n access_log off;\n client_body_temp_path tmp_body; proxy_temp_path tmp_proxy;\n"
            " fastcgi_temp_path tmp_fcgi; uwsgi_temp_path tmp_uwsgi; scgi_temp_path tmp_scgi;\n"
            f"{self.http}" + "\n".join(blocks) + "\n}\n"
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
        for port in [self.backend, *self.ports]:
            wait_port(port, self.proc, lambda: (self.dir / "logs" / "error.log").read_text())
        return self

    def get(self, server, cookie=None):
        """The response, with its body (what the backend received) as `.body`."""
        conn = http.client.HTTPConnection("127.0.0.1", self.ports[server], timeout=10)
        conn.request("GET", "/", headers={"Cookie": cookie} if cookie else {})
        r = conn.getresponse()
        r.body = r.read().decode()
        conn.close()
        return r

    def check_config(self, case):
        """`nginx -t` passes; the message shows nginx's words and the config."""
        t = self.test()
        case.assertEqual(t.returncode, 0, t.stderr + self.conf)

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.stop()

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
        ids = {d[0] for d in CORE_SESSIONS.values()}
        for name, s in settings.items():
            with self.subTest(setting=name):
                self.assertRegex(name, SETTING_NAME)
                for key in ("context", "default", "help", "id", "label", "regex", "type"):
                    self.assertIn(key, s)
                self.assertIn(s["context"], CONTEXTS)
                self.assertIn(s["type"], TYPES)
                self.assertTrue(re.search(s["regex"], s["default"]), "the default matches its own regex")
                # BunkerWeb's naming: the id is the name in lower case with dashes.
                self.assertEqual(s["id"], name.lower().replace("_", "-"))
                self.assertNotIn(s["id"], ids, "setting ids are unique, BunkerWeb's core ones included")
                ids.add(s["id"])

    def test_declares_only_what_bunkerweb_lacks(self):
        # BunkerWeb skips a plugin setting its core already declares ("A
        # setting with id ... already exists"): those are read, not declared.
        settings = load_plugin()["settings"]
        for name in settings:
            with self.subTest(setting=name):
                self.assertNotIn(name, CORE_SESSIONS)
                self.assertNotIn(name, CORE_REDIS)
        self.assertEqual(set(settings), {"USE_NGX_SESSIONS", "NGX_SESSIONS_NAME"})
        self.assertEqual(settings["USE_NGX_SESSIONS"]["default"], "no", "off until switched on, as official plugins")

    def test_readme_names_each_setting_by_its_bunkerweb_id(self):
        # The README's settings table: | `NAME` | `id` | ... for each setting used.
        rows = dict(re.findall(r"^\| `([A-Z0-9_]+)` \| `([a-z0-9-]+)` \|", (PLUGIN / "README.md").read_text(), re.M))
        expected = {name: d[0] for name, d in CORE_SESSIONS.items() if name != "SESSIONS_NAME"}
        expected.update({name: s["id"] for name, s in load_plugin()["settings"].items()})
        self.assertEqual(rows, expected)


    def test_readme_documents_building_loading_and_upgrades(self):
        readme = (PLUGIN / "README.md").read_text()
        # Built as BunkerWeb builds its modules, for its own nginx.
        self.assertIn("nginx -V", readme)
        self.assertIn("--add-dynamic-module=", readme)
        self.assertIn("make modules", readme)
        # Loaded through the script, not by hand-editing the package's file.
        self.assertIn("load-module.sh", readme)
        self.assertIn("/usr/share/bunkerweb/confs/nginx.conf", readme)
        # What an upgrade keeps, and what to do after one.
        section = readme.split("## What an upgrade of BunkerWeb keeps", 1)
        self.assertEqual(len(section), 2, "the README says what an upgrade keeps")
        for kept in ("plugin", ".so", "load_module", "Redis"):
            self.assertIn(kept, section[1])
        self.assertTrue((PLUGIN / "load-module.sh").stat().st_mode & 0o111, "load-module.sh is executable")


class Rendering(unittest.TestCase):
    def test_defaults_render_one_directive_per_line(self):
        http_conf = render("http", defaults())
        self.assertEqual(directives(http_conf), [
            'sessions_secret "random";', "sessions_name random;", "sessions_idling_timeout 1800;",
            "sessions_rolling_timeout 3600;", "sessions_absolute_timeout 86400;",
            "sessions_check_ip on;", "sessions_check_user_agent on;",
        ])
        # Nothing but directives, comments and the trailing newline: no stray blank lines.
        self.assertNotIn("\n\n", http_conf)
        self.assertEqual(directives(render("server-http", defaults())), ["sessions off;"])
        self.assertEqual(directives(render("server-http", {**enabled(), "SESSIONS_DOMAIN": "example.com"})),
                         ["sessions on;", "sessions_cookie_domain example.com;"])

    def test_missing_values_take_bunkerwebs_defaults(self):
        # The Templator falls back to a setting's default when a server's
        # values lack it; the templates must render the same.
        self.assertEqual(render("http", {"USE_NGX_SESSIONS": "yes"}), render("http", enabled()))
        self.assertEqual(render("server-http", {"USE_NGX_SESSIONS": "yes"}), render("server-http", enabled()))

    def test_the_module_never_takes_bunkerwebs_cookie_name(self):
        for bw_name, ours, expected in (("bw_session", "random", "random"),
                                        ("bw_session", "bw_session", "bw_session_ngx"),
                                        ("bw_session", "app", "app"),
                                        ("random", "random", "random")):
            with self.subTest(SESSIONS_NAME=bw_name, NGX_SESSIONS_NAME=ours):
                conf = render("http", {**defaults(), "SESSIONS_NAME": bw_name, "NGX_SESSIONS_NAME": ours})
                self.assertIn(f"sessions_name {expected};", directives(conf))

    def test_not_loaded_renders_no_directive(self):
        # After a BunkerWeb upgrade overwrote its nginx.conf template, the
        # module is not loaded: its directives would fail nginx -t.
        lines = ["load_module /usr/share/bunkerweb/modules/ngx_http_lua_module.so;",
                 "# load_module /usr/share/bunkerweb/modules/ngx_http_sessions_module.so;"]
        for kind in ("http", "server-http"):
            self.assertEqual(directives(render(kind, enabled(), lines)), [], kind)

    def test_secret_with_quotes_is_one_argument(self):
        rendered = render("http", {**defaults(), "SESSIONS_SECRET": 'a"b\\c; sessions off'})
        self.assertIn('sessions_secret "a\\"b\\\\c; sessions off";', rendered)

    def test_keepalive_pool_maps_to_connections_nginx_accepts(self):
        redis = {**enabled(), "USE_REDIS": "yes", "REDIS_HOST": "127.0.0.1"}
        # "10" is BunkerWeb's default: then the value reaches the template
        # only through the Undefined, which Jinja's int filter cannot read.
        for pool, connections in (("0", "1"), ("10", "10"), ("7", "7"), ("500", "64")):
            with self.subTest(REDIS_KEEPALIVE_POOL=pool):
                self.assertIn(f"sessions_redis_connections {connections};",
                              directives(render("http", {**redis, "REDIS_KEEPALIVE_POOL": pool})))
        self.assertIn("sessions_redis_sentinel 10.0.0.1 10.0.0.2:26380;",
                      directives(render("http", {**redis, "REDIS_SENTINEL_HOSTS": "10.0.0.1 10.0.0.2:26380",
                                                 "REDIS_SENTINEL_MASTER": "bw"})))
        self.assertIn("sessions_redis_server [::1]:6379;",
                      directives(render("http", {**redis, "REDIS_HOST": "::1"})))
        self.assertIn("sessions_redis_server unix:/run/redis.sock;",
                      directives(render("http", {**redis, "REDIS_HOST": "/run/redis.sock"})))


class Served(unittest.TestCase):
    """The rendered configuration under `nginx -t` and serving requests."""

    def test_defaults_pass_nginx_t_and_serve_sessions(self):
        with Nginx(enabled(), [{}]) as n:
            n.check_config(self)
            n.start()
            r = n.get(0)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.getheader("X-Session-Status"), "new")
            name, value = r.getheader("Set-Cookie").split(";")[0].split("=", 1)
            self.assertRegex(name, r"^[0-9A-Za-z]{16}$", "random name")
            self.assertEqual(n.get(0, f"{name}={value}").getheader("X-Session-Status"), "valid")

    def test_not_loaded_passes_nginx_t_and_serves_without_sessions(self):
        with Nginx(enabled(), [{}], loaded=False) as n:
            n.check_config(self)
            n.start()
            r = n.get(0)
            self.assertEqual(r.status, 200)
            self.assertIsNone(r.getheader("Set-Cookie"))

    def test_bunkerwebs_own_cookie_reaches_the_backend_untouched(self):
        # BunkerWeb's Lua sessions (antibot, UI) keep their cookie under
        # SESSIONS_NAME. The module must neither take that name, nor refuse,
        # strip or overwrite that cookie.
        bw_cookie = "bw_session=AQAAAJm2y1RjT5ktd4QDbYxGZfbvUZ2nm0pM0kVPdCDo0Wl8kQ"
        for ours in ("random", "bw_session"):
            with self.subTest(NGX_SESSIONS_NAME=ours):
                with Nginx({**enabled(), "SESSIONS_NAME": "bw_session", "NGX_SESSIONS_NAME": ours}, [{}]) as n:
                    n.check_config(self)
                    n.start()
                    r = n.get(0, bw_cookie)
                    self.assertEqual(r.getheader("X-Session-Status"), "new")
                    self.assertIn(bw_cookie, r.body, "BunkerWeb's cookie reaches the backend")
                    set_cookies = r.headers.get_all("Set-Cookie")
                    self.assertEqual(len(set_cookies), 1, set_cookies)
                    ours_name = set_cookies[0].split("=", 1)[0]
                    self.assertNotEqual(ours_name, "bw_session")
                    # Both cookies together: each stays valid, BunkerWeb's is passed on.
                    both = f"{bw_cookie}; {set_cookies[0].split(';')[0]}"
                    r = n.get(0, both)
                    self.assertEqual(r.getheader("X-Session-Status"), "valid")
                    self.assertIn(bw_cookie, r.body)
                    self.assertIsNone(r.getheader("Set-Cookie"))

    def test_multisite_values_reach_each_server(self):
        globals_ = {
            **defaults(),
            "SESSIONS_SECRET": 'se"cr\\et; with "quotes"',
            "NGX_SESSIONS_NAME": "bw_ngx",
            "SESSIONS_IDLING_TIMEOUT": "1",
            "SESSIONS_ROLLING_TIMEOUT": "0",
            "SESSIONS_ABSOLUTE_TIMEOUT": "0",
            "SESSIONS_CHECK_USER_AGENT": "no",
        }
        servers = [
            {"USE_NGX_SESSIONS": "yes", "SESSIONS_DOMAIN": "app.example.com"},
            {"USE_NGX_SESSIONS": "no", "SESSIONS_DOMAIN": ""},
        ]
        with Nginx(globals_, servers) as n:
            n.check_config(self)
            self.assertIn("sessions_check_user_agent off;", n.conf)
            n.start()
            r = n.get(0)
            set_cookie = r.getheader("Set-Cookie")
            self.assertTrue(set_cookie.startswith("bw_ngx=v1."), set_cookie)
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

    def test_bunkerweb_redis_settings_store_sessions_in_redis(self):
        port = free_port()
        work = Path(tempfile.mkdtemp(prefix="bw-redis-", dir=ROOT / "target"))
        redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                  "--requirepass", "bw-pass", "--dir", str(work)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(shutil.rmtree, work, ignore_errors=True)
        self.addCleanup(redis.wait)
        self.addCleanup(redis.kill)
        wait_port(port, redis, lambda: "redis-server did not start")
        # BunkerWeb's core Redis settings, pointed at it.
        values = {**enabled(), "USE_REDIS": "yes", "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(port),
                  "REDIS_DATABASE": "2", "REDIS_PASSWORD": "bw-pass"}
        rendered = directives(render("http", values))
        for line in ("sessions_store redis;", f"sessions_redis_server 127.0.0.1:{port};",
                     "sessions_redis_database 2;", "sessions_redis_timeout 1000ms;",
                     "sessions_redis_connections 10;", 'sessions_redis_password "bw-pass";'):
            self.assertIn(line, rendered)
        with Nginx({**values, "REDIS_KEEPALIVE_POOL": "0"}, [{}]) as zero:
            zero.check_config(self)
        with Nginx(values, [{}]) as n:
            n.check_config(self)
            n.start()
            r = n.get(0)
            self.assertEqual(r.getheader("X-Session-Status"), "new", (n.dir / "logs" / "error.log").read_text())
            cookie = r.getheader("Set-Cookie").split(";")[0]
            self.assertEqual(n.get(0, cookie).getheader("X-Session-Status"), "valid")
            keys = subprocess.run(["redis-cli", "-p", str(port), "--no-auth-warning", "-a", "bw-pass", "-n", "2",
                                   "--scan", "--pattern", "sessions:*"], capture_output=True, text=True).stdout
            # The session, and the random secret and name shared through Redis.
            self.assertEqual(len(keys.split()), 3, keys)


class LoadModule(unittest.TestCase):
    """load-module.sh, on a stand-in for BunkerWeb's nginx.conf template."""

    TEMPLATE = (
        "# /etc/nginx/nginx.conf\n"
        "{% if os.path.isfile(\"/usr/lib64/nginx/modules/ngx_stream_module.so\") +%}\n"
        "load_module /usr/lib64/nginx/modules/ngx_stream_module.so;\n"
        "{% endif %}\n"
        "load_module /usr/share/bunkerweb/modules/ndk_http_module.so;\n"
        "load_module /usr/share/bunkerweb/modules/ngx_http_lua_module.so;\n"
        "\nworker_processes {{ WORKER_PROCESSES }};\n"
    )

    def run_script(self, template, module):
        env = {**os.environ, "NGINX_BIN": nginx_bin(), "TEMPLATE": str(template)}
        return subprocess.run([str(PLUGIN / "load-module.sh"), module], env=env, capture_output=True, text=True)

    def test_adds_one_line_after_the_last_load_module_and_only_once(self):
        with tempfile.TemporaryDirectory(dir=ROOT / "target") as d:
            template = Path(d) / "nginx.conf"
            template.write_text(self.TEMPLATE)
            r = self.run_script(template, module_path())
            self.assertEqual(r.returncode, 0, r.stderr)
            lines = template.read_text().splitlines()
            self.assertEqual(lines[6], f"load_module {module_path()};")
            self.assertEqual(lines[5], "load_module /usr/share/bunkerweb/modules/ngx_http_lua_module.so;")
            once = template.read_text()
            r = self.run_script(template, module_path())
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(template.read_text(), once)
            # The plugin then renders its directives.
            self.assertIn("sessions on;", directives(render("server-http", enabled(), lines)))

    def test_refuses_a_module_nginx_cannot_load(self):
        with tempfile.TemporaryDirectory(dir=ROOT / "target") as d:
            template = Path(d) / "nginx.conf"
            template.write_text(self.TEMPLATE)
            stale = Path(d) / "ngx_http_sessions_module.so"
            stale.write_bytes(b"built for another nginx")
            r = self.run_script(template, str(stale))
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("cannot load", r.stderr)
            self.assertEqual(template.read_text(), self.TEMPLATE, "the template is left as it was")


if __name__ == "__main__":
    unittest.main()
