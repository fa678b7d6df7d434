#!/usr/bin/env python3
"""End-to-end test in a real headless Chromium: the demo as a person sees it.

Runs nginx with nginx-conf/demo.conf (on free ports) and drives Debian's
chromium through chromedriver's WebDriver protocol (plain HTTP, standard
library only). It takes a screenshot of each page (target/browser/*.png) and
checks the text a person would read there: the session on the home page,
the protected page redirecting to the login form, a wrong password refused
on the page, a login (POSTed: no password in any URL) landing back on the
original URL and greeting the user, the cookie's flags in the browser's
store, the metrics linked from the home page, and a logout that says so.
"""

import base64
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
SHOTS = ROOT / "target" / "browser"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                sys.exit(f"{what} exited")
            time.sleep(0.1)
    sys.exit(f"{what} did not listen on {port}")


def start_nginx(work):
    nginx = subprocess.run([str(ROOT / "scripts" / "nginx-bin.sh")], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.strip()
    port, app = free_port(), free_port()
    conf = (ROOT / "nginx-conf" / "demo.conf").read_text()
    conf = (conf.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
                .replace("127.0.0.1:8081", f"127.0.0.1:{app}")
                .replace("target/release/libngx_http_sessions_module.so",
                         str(ROOT / "target" / "release" / "libngx_http_sessions_module.so"))
                .replace("root nginx-conf/demo;", f"root {ROOT / 'nginx-conf' / 'demo'};")
                .replace(".run/", "")
                .replace("error_log stderr notice;", "error_log logs/error.log info;"))
    (work / "logs").mkdir()
    (work / "demo.conf").write_text(conf)
    user = "user root root;" if os.geteuid() == 0 else ""
    proc = subprocess.Popen([str(ROOT / nginx), "-p", str(work), "-c", "demo.conf", "-e", "logs/error.log",
                             "-g", f"daemon off; {user}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc, "nginx")
    return proc, port


class WebDriver:
    def __init__(self, port, profile):
        self.port = port
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                # As root Chromium needs --no-sandbox; the rest keeps it off the network.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}"],
            },
        }}}
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def call(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request(method, path, json.dumps(body) if body is not None else None,
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        data = json.loads(r.read() or b"{}")
        conn.close()
        if r.status != 200:
            raise AssertionError(f"{method} {path}: {r.status} {data}")
        return data["value"]

    def s(self, method, path, body=None):
        return self.call(method, f"/session/{self.session}{path}", body)

    def go(self, url):
        self.s("POST", "/url", {"url": url})

    def url(self):
        return self.s("GET", "/url")

    def find(self, css):
        return self.s("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def type(self, css, text):
        self.s("POST", f"/element/{self.find(css)}/value", {"text": text})

    def click(self, css):
        self.s("POST", f"/element/{self.find(css)}/click", {})

    def text(self, css):
        """The element's text as rendered (what a person reads)."""
        return self.s("GET", f"/element/{self.find(css)}/text")

    def displayed(self, css):
        return self.s("GET", f"/element/{self.find(css)}/displayed")

    def attr(self, css, name):
        return self.s("GET", f"/element/{self.find(css)}/attribute/{name}")

    def screenshot(self, name):
        png = base64.b64decode(self.s("GET", "/screenshot"))
        assert png.startswith(b"\x89PNG") and len(png) > 5000, f"{name}: an empty screenshot"
        SHOTS.mkdir(parents=True, exist_ok=True)
        (SHOTS / f"{name}.png").write_bytes(png)

    def cookies(self):
        return self.s("GET", "/cookie")

    def wait_url(self, want, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.url() == want:
                return
            time.sleep(0.1)
        raise AssertionError(f"expected {want}, at {self.url()}")

    def quit(self):
        self.call("DELETE", f"/session/{self.session}")


CHECKS = []


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    CHECKS.append(what)
    print(f"ok - {what}")


def main():
    work = Path(tempfile.mkdtemp(prefix="browser-", dir=ROOT / "target"))
    nginx, port = start_nginx(work)
    driver_port = free_port()
    driver = subprocess.Popen(["/usr/bin/chromedriver", f"--port={driver_port}"],
                              stdout=open(work / "chromedriver.log", "w"), stderr=subprocess.STDOUT)
    wd = None
    failed = 0
    try:
        wait_port(driver_port, driver, "chromedriver")
        wd = WebDriver(driver_port, work / "profile")
        base = f"http://127.0.0.1:{port}"
        wd.s("POST", "/window/rect", {"width": 1024, "height": 900})
        visited = []

        def go(url):
            wd.go(url)
            visited.append(wd.url())

        go(f"{base}/")
        wd.screenshot("1-home-new")
        check(wd.text("#status") == "new", "home: a first visit shows a new session")
        check(wd.text("#user") == "nobody yet", "home: nobody is signed in")
        started = wd.text("#created")
        check(started not in ("", "never") and any(c.isdigit() for c in started), "home: the start time is shown")
        check(wd.displayed("#metrics") and wd.attr("#metrics", "href") == "/metrics",
              "home: the metrics are linked")
        body = wd.text("body")
        for said in ("5 minutes", "6 minutes", "8 minutes", "1 hour", "30 days"):
            check(said in body, f"home: states {said} (demo.rs checks them against demo.conf)")
        session_id = wd.text("#id")
        go(f"{base}/")
        check(wd.text("#status") == "valid" and wd.text("#id") == session_id,
              "home: a reload shows the same session, valid")

        go(f"{base}/private/")
        check(wd.url().startswith(f"{base}/login/?rd="), "the private page redirects to the login form")
        wd.screenshot("2-login")
        check(not wd.displayed("#error"), "login: no error shown before trying")
        check(wd.attr("#login", "method") == "post", "login: the form POSTs")
        check(wd.attr("#password", "type") == "password", "login: the password is masked")

        wd.type("#user", "alice")
        wd.type("#password", "wrong")
        wd.click("#submit")
        deadline = time.time() + 5
        while not wd.displayed("#error") and time.time() < deadline:
            time.sleep(0.1)
        wd.screenshot("3-login-wrong-password")
        check(wd.displayed("#error") and wd.text("#error") == "Wrong user name or password.",
              "login: a wrong password is refused on the page")
        visited.append(wd.url())

        go(wd.url())  # the form again, with its rd
        wd.type("#user", "alice")
        wd.type("#password", "demo")
        wd.click("#submit")
        wd.wait_url(f"{base}/private/")
        visited.append(wd.url())
        check(wd.url() == f"{base}/private/", "logging in lands back on the original URL")
        wd.screenshot("4-private")
        check(wd.text("#welcome") == "Hello, alice", "private: the page greets the user")
        check(wd.text("#status") == "valid", "private: the session is valid")

        session = [c for c in wd.cookies() if c["value"].startswith("v1.")]
        check(len(session) == 1, "the browser holds one session cookie")
        c = session[0]
        check(c["httpOnly"] is True, "the cookie is HttpOnly in the browser's store")
        check(c.get("sameSite") == "Lax", "the cookie is SameSite=Lax in the browser's store")
        check(c["path"] == "/" and not c.get("secure"), "Path=/, no Secure over plain HTTP")
        check("expiry" not in c, "a browser-session cookie without remember-me")

        go(f"{base}/")
        wd.screenshot("5-home-signed-in")
        check(wd.text("#user") == "alice", "home: shows who is signed in")
        check(wd.displayed("#nav-logout"), "home: offers to log out")

        wd.click("#metrics")
        visited.append(wd.url())
        wd.screenshot("6-metrics")
        check("nginx_sessions_" in wd.text("body"), "metrics: the Prometheus metrics are shown")

        go(f"{base}/private/")
        wd.click("#logout")
        wd.wait_url(f"{base}/login/?logged_out=1")
        visited.append(wd.url())
        wd.screenshot("7-logged-out")
        check(wd.displayed("#logged-out") and wd.text("#logged-out").startswith("You are logged out."),
              "logout: the page says so")
        go(f"{base}/private/")
        check(wd.url().startswith(f"{base}/login/?rd="), "after logout the private page redirects again")
        check(not any("password" in u or "demo" in u.split("?", 1)[-1] for u in visited),
              f"no URL ever carried the password ({len(visited)} URLs)")
    except AssertionError as e:
        print(f"not ok - {e}")
        failed = 1
    finally:
        if wd:
            try:
                wd.quit()
            except Exception:
                pass
        driver.terminate()
        nginx.terminate()
        driver.wait(timeout=10)
        nginx.wait(timeout=10)
        if not failed:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs kept in {work}")
    passed = len(CHECKS)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
