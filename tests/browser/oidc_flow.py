#!/usr/bin/env python3
"""End-to-end OpenID Connect login in a real headless Chromium.

Starts oidc-provider 9 (target/oidc-provider, installed by
scripts/oidc-provider.sh) and nginx with the module logging visitors in
through it, then drives Debian's chromium as a person would: the protected
page sends the browser to the provider's sign-in page; signing in and
consenting there lands back on the original URL, logged in, with the
provider's claims; the login cookie is gone and the session cookie is
HttpOnly; the logout goes on to the provider's sign-out page, and after it
the protected page sends the browser to the provider again. Screenshots in
target/browser/oidc-*.png.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from login_flow import ROOT, WebDriver, check, free_port, wait_port, CHECKS  # noqa: E402

CLIENT, SECRET = "browser-test", "browser-test-client-secret"

CONF = """
load_module {module};
{user}
worker_processes 2;
error_log logs/error.log info;
pid logs/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path tmp_body; proxy_temp_path tmp_proxy;
    fastcgi_temp_path tmp_fcgi; uwsgi_temp_path tmp_uwsgi; scgi_temp_path tmp_scgi;
    sessions_zone sessions:4m;
    sessions_secret browser-test-secret-0123456789abcdef;
    sessions_name sid;
    sessions_oidc_issuer {issuer};
    sessions_oidc_client_id {client};
    sessions_oidc_client_secret_file {secret_file};
    sessions_oidc_redirect_uri {base}/_oidc/callback;
    sessions_oidc_scopes email profile;
    sessions_oidc_claims email name;
    server {{
        listen 127.0.0.1:{port};
        sessions on;
        location / {{
            sessions_require_login on;
            proxy_set_header X-User $session_user;
            proxy_set_header X-Email $session_data_email;
            proxy_pass http://127.0.0.1:{app};
        }}
        location = /_oidc/callback {{ sessions_oidc_callback; }}
        location = /logout {{ sessions_logout;
            sessions_oidc_post_logout_redirect_uri {base}/bye; }}
        location = /bye {{ sessions_require_login off; proxy_pass http://127.0.0.1:{app}; }}
    }}
    server {{
        listen 127.0.0.1:{app};
        default_type text/html;
        location = /bye {{ return 200 '<p id="bye">Signed out.</p>'; }}
        location / {{ return 200 '<p id="who">Hello, $http_x_user</p><p id="email">$http_x_email</p>'; }}
    }}
}}
"""


def page_says(wd, *words):
    """Whether the page shows any of `words`; `False` while it is being
    replaced (its elements go stale under the reader)."""
    try:
        body = wd.text("body").lower()
    except AssertionError:
        return False
    return any(w in body for w in words)


def main():
    work = Path(tempfile.mkdtemp(prefix="browser-oidc-", dir=ROOT / "target"))
    (work / "logs").mkdir()
    port, app, provider_port, driver_port = free_port(), free_port(), free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    provider_dir = ROOT / "target" / "oidc-provider"
    provider = subprocess.Popen(
        ["node", str(provider_dir / "provider.mjs"), str(provider_port), CLIENT, SECRET, f"{base}/_oidc/callback",
         f"{base}/_oidc/backchannel", f"{base}/bye"],
        cwd=provider_dir, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = provider.stdout.readline()
    if not line.startswith("ready "):
        sys.exit(f"oidc-provider did not start: {line!r}")
    issuer = line.split()[1]
    (work / "client.secret").write_text(SECRET + "\n")
    (work / "nginx.conf").write_text(CONF.format(
        module=ROOT / "target" / "release" / "libngx_http_sessions_module.so",
        user="user root root;" if os.geteuid() == 0 else "", issuer=issuer, client=CLIENT,
        secret_file=work / "client.secret", base=base, port=port, app=app))
    nginx_bin = subprocess.run([str(ROOT / "scripts" / "nginx-bin.sh")], cwd=ROOT, capture_output=True, text=True,
                               check=True).stdout.strip()
    nginx = subprocess.Popen([str(ROOT / nginx_bin), "-p", str(work), "-c", "nginx.conf", "-e", "logs/error.log",
                              "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, nginx, "nginx")
    driver = subprocess.Popen(["/usr/bin/chromedriver", f"--port={driver_port}"],
                              stdout=open(work / "chromedriver.log", "w"), stderr=subprocess.STDOUT)
    wd = None
    failed = 0
    try:
        wait_port(driver_port, driver, "chromedriver")
        wd = WebDriver(driver_port, work / "profile")
        wd.s("POST", "/window/rect", {"width": 1024, "height": 900})

        wd.go(f"{base}/reports?year=2026")
        check(wd.url().startswith(f"{issuer}/interaction/"), "the protected page sends the browser to the provider")
        wd.screenshot("oidc-1-provider-sign-in")
        wd.type("input[name=login]", "alice")
        wd.type("input[name=password]", "any")
        wd.click("button[type=submit]")
        deadline = time.time() + 10
        while not page_says(wd, "consent", "continue"):
            if time.time() > deadline:
                raise AssertionError("the provider never asked for consent")
            time.sleep(0.1)
        check(True, "the provider asks for consent")
        wd.screenshot("oidc-2-provider-consent")
        wd.click("button[type=submit]")
        wd.wait_url(f"{base}/reports?year=2026")
        check(True, "consenting lands back on the original URL")
        wd.screenshot("oidc-3-logged-in")
        check(wd.text("#who") == "Hello, alice", "the application is told who signed in")
        check(wd.text("#email") == "alice@example.org", "and the provider's email claim")
        names = {c["name"]: c for c in wd.cookies()}
        check(not any(k.startswith("sid_oidc_") and k != "sid_oidc_tokens" for k in names), "the login cookie is gone after the login")
        check(names.get("sid", {}).get("httpOnly") is True, "the session cookie is HttpOnly")

        wd.go(f"{base}/logout")
        check(wd.url().startswith(f"{issuer}/session/end"), "the logout goes on to the provider's sign-out page")
        wd.screenshot("oidc-4-provider-sign-out")
        wd.click("button[value=yes]")
        wd.wait_url(f"{base}/bye")
        check(wd.text("#bye") == "Signed out.", "the provider sends the browser back to the configured page")
        wd.go(f"{base}/reports")
        check(wd.url().startswith(f"{issuer}/"), "after the logout the protected page sends to the provider again")
        log = (work / "logs" / "error.log").read_text()
        check(not any(b in log for b in ("panicked", "exited on signal", "[alert]")), "nginx logged no crash")
    except AssertionError as e:
        print(f"not ok - {e}")
        failed = 1
    finally:
        if wd:
            try:
                wd.quit()
            except Exception:
                pass
        for p in (driver, nginx, provider):
            p.terminate()
        for p in (driver, nginx, provider):
            p.wait(timeout=10)
        if not failed:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs kept in {work}")
    print(f"{len(CHECKS)} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
