#!/usr/bin/env python3
"""End-to-end test in a real headless Chromium: the demo's login flow.

Runs nginx with nginx-conf/demo.conf (on free ports) and drives Debian's
chromium through chromedriver's WebDriver protocol (plain HTTP, standard
library only): the protected page redirects to the login form, logging in
lands back on the original URL showing the user, the browser's cookie store
shows HttpOnly and SameSite=Lax, and logging out leads to the login page
again.
"""

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
        return self.s("GET", f"/element/{self.find(css)}/text")

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

        wd.go(f"{base}/private/")
        check(wd.url().startswith(f"{base}/login/?rd="), "the protected page redirects to the login form")

        wd.type("#user", "alice")
        wd.type("#password", "wrong")
        wd.click("#submit")
        time.sleep(0.5)
        check(wd.text("#error") == "Wrong user name or password.", "a wrong password is refused")

        wd.go(wd.url())  # reload the form with its rd
        wd.type("#user", "alice")
        wd.type("#password", "demo")
        wd.click("#submit")
        wd.wait_url(f"{base}/private/")
        check(True, "logging in lands back on the original URL")
        check(wd.text("#user") == "alice", "the page shows the logged-in user")
        shot = wd.s("GET", "/screenshot")
        (ROOT / "target" / "browser-private.png").write_bytes(__import__("base64").b64decode(shot))

        session = [c for c in wd.cookies() if c["value"].startswith("v1.")]
        check(len(session) == 1, "the browser holds one session cookie")
        c = session[0]
        check(c["httpOnly"] is True, "the cookie is HttpOnly in the browser's store")
        check(c.get("sameSite") == "Lax", "the cookie is SameSite=Lax in the browser's store")
        check(c["path"] == "/" and not c.get("secure"), "Path=/, no Secure over plain HTTP")
        check("expiry" not in c, "a browser-session cookie without remember-me")

        wd.click("#logout")
        wd.wait_url(f"{base}/login/")
        check(True, "logging out leads to the login page")
        wd.go(f"{base}/private/")
        check(wd.url().startswith(f"{base}/login/?rd="), "after logout the protected page redirects again")
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
