#!/usr/bin/env python3
"""The Redis fault suite (`make chaos`).

Each fault runs against real processes (nginx with the built module and two
workers, redis-server, Sentinel, a Cluster with replicas) under steady load
from browser-like clients: each keeps the last Set-Cookie it was sent,
browses, logs in and logs out. The suite prints one table and fails when a
fault loses anything or answers a 5xx that no policy chose.

Columns:
  requests     requests sent during the fault's run
  5xx unchosen 5xx answers other than the 503 of `sessions_redis_unavailable`
               (checked against the module's own counter), and dropped
               connections (except for kill -9 of a worker, which drops its
               own connections by definition)
  sessions     a session the client held was answered unknown/ended/invalid/expired
               (except "unknown" or "ended" right after a login or logout whose
               connection a killed worker dropped: it may have taken effect
               unanswered, and the run's notes count those)
  logins       a logged-in client was answered as someone else or nobody
  logouts      a cookie answered 204 by logout was later seen logged in
"""

import http.client
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE = os.environ.get("SESSIONS_MODULE", os.path.join(ROOT, "target/release/libngx_http_sessions_module.so"))
CLIENTS = 12
RUN = 8.0  # seconds of load per fault
FAULT_AT = 2.5


def nginx_bin():
    return subprocess.check_output([os.path.join(ROOT, "scripts/nginx-bin.sh")], cwd=ROOT, text=True).strip()


def free_port():
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        port = random.randrange(20000, 45000)
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue


def wait_port(port, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


def cli(port, *args, check=False):
    r = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *map(str, args)],
                       capture_output=True, text=True, timeout=15)
    if check and r.returncode != 0:
        raise RuntimeError(f"redis-cli {args}: {r.stderr}")
    return r.stdout.strip()


class RedisProc:
    """One redis-server on loopback, with its data in its own directory."""

    def __init__(self, base, extra=()):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(dir=base, prefix=f"redis{self.port}-")
        self.args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                     "--save", "", "--appendonly", "no", "--enable-debug-command", "yes", *extra]
        self.proc = None
        self.start()

    def start(self):
        log = open(os.path.join(self.dir, "log"), "a")
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=log)
        wait_port(self.port)
        end = time.time() + 10
        while "loading:0" not in cli(self.port, "INFO", "persistence").replace("\r", ""):
            if time.time() > end:
                raise RuntimeError("redis did not load")
            time.sleep(0.02)

    def shutdown_saving(self):
        cli(self.port, "SHUTDOWN", "SAVE")
        self.proc.wait(10)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_nginx(base, conf_body, top=""):
    """An nginx on `conf_body` (the http block's content): (dir, process)."""
    d = tempfile.mkdtemp(dir=base, prefix="nginx-")
    for sub in ("logs", "html", "tmp"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    with open(os.path.join(d, "html/index.html"), "w") as f:
        f.write("hello\n")
    conf = f"""
{top}
pid logs/nginx.pid;
error_log logs/error.log info;
{"user root root;" if os.getuid() == 0 else ""}
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path tmp; proxy_temp_path tmp;
    fastcgi_temp_path tmp; uwsgi_temp_path tmp; scgi_temp_path tmp;
{conf_body}
}}
"""
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(conf)
    proc = subprocess.Popen([nginx_bin(), "-p", d, "-c", "nginx.conf", "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return d, proc


def stop_nginx(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


class Nginx:
    """The nginx under test, and the application behind it in an nginx of
    its own (without the module), so that a fault in the first never
    takes the application's side of a proxied request with it."""

    def __init__(self, base, store_conf, policy="503", workers=2):
        self.port, self.app = free_port(), free_port()
        _, self.app_proc = start_nginx(base, f"""
    server {{
        listen 127.0.0.1:{self.app};
        location /login {{ add_header X-Session-User $arg_user; return 200 "ok\\n"; }}
    }}""")
        wait_port(self.app)
        self.dir, self.proc = start_nginx(base, f"""
    sessions on; sessions_secret chaos-secret-0123456789; sessions_name sid;
    sessions_store redis; {store_conf}
    sessions_redis_unavailable {policy};
    sessions_redis_timeout 500ms; sessions_redis_connect_timeout 500ms;
    server {{
        listen 127.0.0.1:{self.port};
        root html;
        add_header X-Session-Status $session_status always;
        add_header X-User $session_user always;
        location /app/ {{ sessions_control_headers on; proxy_pass http://127.0.0.1:{self.app}/; }}
        location = /logout {{ sessions_logout; }}
        location = /metrics {{ sessions off; sessions_status; }}
    }}""", top=f"load_module {MODULE};\nworker_processes {workers};")
        wait_port(self.port)

    def workers(self):
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def reload(self):
        self.proc.send_signal(signal.SIGHUP)

    def metric(self, name):
        total = 0
        try:
            body = request(self.port, "/metrics")[3]
        except OSError:
            return None
        found = False
        for line in body.splitlines():
            if line.startswith("nginx_sessions_" + name):
                total += int(line.rsplit(" ", 1)[1])
                found = True
        return total if found else None

    def log(self):
        with open(os.path.join(self.dir, "logs/error.log")) as f:
            return f.read()

    def stop(self):
        stop_nginx(self.proc)
        stop_nginx(self.app_proc)


def request(port, path, cookie=None):
    """(status, headers dict lowercased, set-cookie value or None, body)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        h = {"Connection": "close"}
        if cookie:
            h["Cookie"] = cookie
        c.request("GET", path, headers=h)
        r = c.getresponse()
        body = r.read().decode("latin-1")
        headers = {k.lower(): v for k, v in r.getheaders()}
        set_cookie = None
        for k, v in r.getheaders():
            if k.lower() == "set-cookie" and v.startswith("sid="):
                set_cookie = v
        return r.status, headers, set_cookie, body
    finally:
        c.close()


REFUSED = ("unknown", "ended", "invalid", "expired_idle", "expired_rolling", "expired_absolute", "ip_mismatch", "ua_mismatch")


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = self.n503 = self.other5xx = self.dropped = 0
        self.sessions = self.logins = self.logouts = 0
        self.applied_unanswered = 0
        self.notes = []

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    def note(self, s):
        with self.lock:
            if len(self.notes) < 8:
                self.notes.append(s)


class Client:
    """A browser: keeps the last cookie it was sent, knows who it is."""

    def __init__(self, n, port, tally, rng):
        self.n, self.port, self.tally, self.rng = n, port, tally, rng
        self.cookie = None  # "sid=..."
        self.user = None
        self.dead = []  # cookies logged out
        self.logins = 0
        # A login or logout whose connection was dropped (a worker killed)
        # may have taken effect unanswered: the old cookie is then unknown
        # (a login's) or ended (a logout's).
        self.unanswered_change = False

    def send(self, path, cookie):
        try:
            st, h, sc, _ = request(self.port, path, cookie)
        except (OSError, http.client.HTTPException):
            self.tally.add(requests=1, dropped=1)
            return None
        self.tally.add(requests=1)
        if st == 503:
            self.tally.add(n503=1)
        elif st >= 500:
            self.tally.add(other5xx=1)
            self.tally.note(f"{st} on {path}")
        return st, h, sc

    def judge(self, got, presented_live):
        """Checks an answer to a request that presented the current cookie."""
        st, h, sc = got
        if st >= 500:
            return
        status = h.get("x-session-status", "")
        user = h.get("x-user", "")
        if presented_live and status in ("unknown", "ended") and self.unanswered_change:
            self.tally.add(applied_unanswered=1)
            self.user = None
        elif presented_live and status in REFUSED:
            if self.user:
                self.tally.add(logins=1)
                self.tally.note(f"client {self.n}: login {self.user} answered {status}")
            else:
                self.tally.add(sessions=1)
                self.tally.note(f"client {self.n}: session answered {status}")
            self.user = None
        elif presented_live and status in ("valid", "renewed") and (user or None) != self.user:
            self.tally.add(logins=1)
            self.tally.note(f"client {self.n}: expected user {self.user!r}, got {user!r}")
            self.user = user or None
        if presented_live:
            self.unanswered_change = False
        if sc is not None:
            if "Max-Age=0" in sc:
                self.cookie = None
            else:
                self.cookie = sc.split(";", 1)[0]

    def step(self):
        r = self.rng.random()
        if self.cookie is None:
            got = self.send("/index.html", None)
            if got:
                self.judge(got, False)
        elif r < 0.12 and not self.user:
            self.logins += 1
            name = f"c{self.n}x{self.logins}"
            got = self.send(f"/app/login?user={name}", self.cookie)
            if got:
                st, h, sc = got
                if st == 200 and sc and "Max-Age=0" not in sc and h.get("x-user") == name:
                    self.user = name
                    self.cookie = sc.split(";", 1)[0]
                else:
                    self.judge(got, True)
            else:
                self.unanswered_change = True
        elif r < 0.20 and self.user:
            before = self.cookie
            got = self.send("/logout", self.cookie)
            if got and got[0] == 204:
                self.dead.append(before)
                self.cookie = None
                self.user = None
            elif got is None:
                self.unanswered_change = True
        elif r < 0.26 and self.dead:
            c = self.rng.choice(self.dead)
            got = self.send("/index.html", c)
            if got and got[0] < 500 and got[1].get("x-user"):
                self.tally.add(logouts=1)
                self.tally.note(f"client {self.n}: a logged-out cookie is logged in as {got[1]['x-user']}")
        else:
            got = self.send("/index.html", self.cookie)
            if got:
                self.judge(got, True)

    def verify(self):
        """After the fault: the current session and login hold, logouts too."""
        end = time.time() + 15
        while self.cookie:
            got = self.send("/index.html", self.cookie)
            if got and got[0] < 500:
                self.judge(got, True)
                break
            if time.time() > end:
                self.tally.add(sessions=1)
                self.tally.note(f"client {self.n}: no answer after the fault")
                break
            time.sleep(0.2)
        for c in self.dead:
            got = self.send("/index.html", c)
            if got and got[0] < 500 and got[1].get("x-user"):
                self.tally.add(logouts=1)
                self.tally.note(f"client {self.n}: a logged-out cookie is logged in after the fault")


def run_load(n, fault, tally, seed):
    clients = [Client(i, n.port, tally, random.Random(seed * 100 + i)) for i in range(CLIENTS)]
    stop = threading.Event()

    def loop(c):
        while not stop.is_set():
            c.step()

    threads = [threading.Thread(target=loop, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    time.sleep(FAULT_AT)
    fault()
    time.sleep(max(0.0, RUN - FAULT_AT))
    stop.set()
    for t in threads:
        t.join()
    return clients


def drain(n, timeout=25):
    end = time.time() + timeout
    if n.metric("redis_pending") is None:
        time.sleep(3)  # a module without a journal (to compare)
        return True
    while time.time() < end:
        if n.metric("redis_pending") == 0:
            return True
        time.sleep(0.1)
    return False


# Topologies -----------------------------------------------------------------

class Standalone:
    def __init__(self, base):
        self.r = RedisProc(base)

    def conf(self):
        return f"sessions_redis_server 127.0.0.1:{self.r.port};"

    def close(self):
        self.r.kill()


class Sentinel:
    def __init__(self, base):
        guard = ["--min-replicas-to-write", "1", "--min-replicas-max-lag", "5"]
        self.master = RedisProc(base, guard)
        self.replica = RedisProc(base, ["--replicaof", "127.0.0.1", str(self.master.port)])
        self.port = free_port()
        d = tempfile.mkdtemp(dir=base, prefix="sentinel-")
        conf = os.path.join(d, "sentinel.conf")
        with open(conf, "w") as f:
            f.write(f"port {self.port}\nbind 127.0.0.1\ndir {d}\n"
                    f"sentinel monitor m 127.0.0.1 {self.master.port} 1\n"
                    "sentinel down-after-milliseconds m 1000\nsentinel failover-timeout m 10000\n")
        log = open(os.path.join(d, "log"), "w")
        self.proc = subprocess.Popen(["redis-server", conf, "--sentinel"], stdout=log, stderr=log)
        wait_port(self.port)
        end = time.time() + 20
        while "master_link_status:up" not in cli(self.replica.port, "INFO", "replication").replace("\r", ""):
            if time.time() > end:
                raise RuntimeError("replica did not sync")
            time.sleep(0.05)
        while "slave" not in cli(self.port, "SENTINEL", "REPLICAS", "m"):
            if time.time() > end:
                raise RuntimeError("sentinel did not find the replica")
            time.sleep(0.1)

    def conf(self):
        return f"sessions_redis_sentinel 127.0.0.1:{self.port}; sessions_redis_sentinel_master m;"

    def failover(self):
        out = cli(self.port, "SENTINEL", "FAILOVER", "m")
        if out != "OK":
            raise RuntimeError(f"SENTINEL FAILOVER: {out}")

    def settled(self):
        """The failover is over: the old master follows the new one."""
        end = time.time() + 20
        while time.time() < end:
            if "role:slave" in cli(self.master.port, "INFO", "replication") and \
                    "master_link_status:up" in cli(self.master.port, "INFO", "replication"):
                return
            time.sleep(0.1)
        raise RuntimeError("the failover did not settle")

    def close(self):
        self.proc.kill()
        self.proc.wait()
        self.master.kill()
        self.replica.kill()


class Cluster:
    def __init__(self, base):
        self.nodes = [RedisProc(base, ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
                                       "--cluster-config-file", "nodes.conf"]) for _ in range(6)]
        addrs = [f"127.0.0.1:{r.port}" for r in self.nodes]
        subprocess.run(["redis-cli", "--cluster", "create", *addrs, "--cluster-replicas", "1", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        end = time.time() + 30
        while time.time() < end:
            if all("cluster_state:ok" in cli(r.port, "CLUSTER", "INFO") for r in self.nodes):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("cluster not ok")
        # Replicas in sync before the fault.
        while time.time() < end:
            reps = [r for r in self.nodes if "role:slave" in cli(r.port, "INFO", "replication")]
            if len(reps) == 3 and all("master_link_status:up" in cli(r.port, "INFO", "replication") for r in reps):
                self.replicas = reps
                return
            time.sleep(0.1)
        raise RuntimeError("cluster replicas not in sync")

    def conf(self):
        masters = [r for r in self.nodes if r not in self.replicas]
        return "sessions_redis_cluster " + " ".join(f"127.0.0.1:{r.port}" for r in masters) + ";"

    def failover(self):
        out = cli(self.replicas[0].port, "CLUSTER", "FAILOVER")
        if out != "OK":
            raise RuntimeError(f"CLUSTER FAILOVER: {out}")

    def close(self):
        for r in self.nodes:
            r.kill()


# Faults ---------------------------------------------------------------------

def scenario(name, topo_cls, policy, fault, after=None, prepare=None, dropped_ok=False):
    base = tempfile.mkdtemp(prefix="chaos-")
    tally = Tally()
    topo = topo_cls(base)
    n = Nginx(base, topo.conf(), policy)
    ctx = {"topo": topo, "nginx": n}
    try:
        if prepare:
            prepare(ctx)
        refused0 = n.metric("redis_unavailable_total{zone=\"sessions\",action=\"refused\"") or 0
        clients = run_load(n, lambda: fault(ctx), tally, hash(name) & 0xffff)
        if after:
            after(ctx)
        drained = drain(n)
        if not drained:
            tally.note("the journal did not drain")
        # Side by side, as the load ran: a logged-out cookie Redis no longer
        # holds is refused after the 25 ms look again, and there are many.
        checks = [threading.Thread(target=c.verify) for c in clients]
        for t in checks:
            t.start()
        for t in checks:
            t.join()
        if "victim" in ctx:
            ctx["victim"](tally)
        refused = (n.metric("redis_unavailable_total{zone=\"sessions\",action=\"refused\"") or 0) - refused0
        unchosen = tally.other5xx + max(0, tally.n503 - refused) + (0 if dropped_ok else tally.dropped)
        log = n.log()
        if dropped_ok:
            # The master's own reports of the kill: the worker's exit, and
            # the zone lock it held, which nginx frees (ngx_unlock_mutexes).
            # A worker now holds a zone's lock on most requests (counters,
            # the journal), so a kill lands inside one now and then.
            log = "\n".join(l for l in log.splitlines()
                             if "exited on signal 9" not in l and not re.search(r'shared memory zone ".*" was locked by \d+', l))
        for bad in ("exited on signal", "[alert]", "[crit]", "[emerg]", "panicked"):
            if bad in log:
                tally.note(f"{bad} in the error log: " + next(l for l in log.splitlines() if bad in l))
                unchosen += 1
        if not drained:
            unchosen += 1
        if tally.applied_unanswered:
            tally.note(f"{tally.applied_unanswered} old cookie(s) answered unknown after a login or logout "
                       "whose connection was dropped: it had taken effect")
        return dict(name=name, requests=tally.requests, unchosen=unchosen, sessions=tally.sessions,
                    logins=tally.logins, logouts=tally.logouts, n503=tally.n503, dropped=tally.dropped,
                    notes=tally.notes)
    finally:
        n.stop()
        topo.close()
        shutil.rmtree(base, ignore_errors=True)


def pause_write(ctx):
    cli(ctx["topo"].r.port, "CLIENT", "PAUSE", 2500, "WRITE", check=True)


def slow(ctx):
    # DEBUG SLEEP blocks Redis; run it from a side thread.
    threading.Thread(target=cli, args=(ctx["topo"].r.port, "DEBUG", "SLEEP", "2")).start()


def stop_restart(ctx):
    r = ctx["topo"].r
    r.shutdown_saving()
    time.sleep(2.0)
    r.start()


def failover(ctx):
    ctx["topo"].failover()


def settle_sentinel(ctx):
    ctx["topo"].settled()


def reloads(ctx):
    ctx["nginx"].reload()
    time.sleep(1.5)
    ctx["nginx"].reload()


def kill9(ctx):
    for pid in ctx["nginx"].workers()[:1]:
        os.kill(pid, signal.SIGKILL)
    time.sleep(1.5)
    for pid in ctx["nginx"].workers()[:1]:
        os.kill(pid, signal.SIGKILL)


def plant_victim(ctx):
    """A session of its own, and its key, for the wrong-type fault."""
    n, r = ctx["nginx"], ctx["topo"].r
    st, h, sc, _ = request(n.port, "/index.html")
    ctx["victim_cookie"] = sc.split(";", 1)[0]
    keys = [k for k in cli(r.port, "--scan").split() if ":user:" not in k and ":handle:" not in k]
    assert len(keys) == 1, keys
    ctx["victim_key"] = keys[0]

    def check(tally):
        # Treated as no session, never a lasting 503; the key is repaired.
        for _ in range(3):
            st, h, sc, _ = request(n.port, "/index.html", ctx["victim_cookie"])
            tally.add(requests=1)
            if st >= 500:
                tally.add(other5xx=1)
                tally.note(f"wrong type: {st}")
        if cli(r.port, "TYPE", ctx["victim_key"]) == "hash":
            tally.add(other5xx=1)
            tally.note("the wrong-type key was not repaired")

    ctx["victim"] = check


def wrong_type(ctx):
    r = ctx["topo"].r
    cli(r.port, "DEL", ctx["victim_key"])
    cli(r.port, "HSET", ctx["victim_key"], "f", "v")
    idx = [k for k in cli(r.port, "--scan", "--pattern", "sessions:user:*").split()]
    for k in idx[:2]:
        cli(r.port, "DEL", k)
        cli(r.port, "LPUSH", k, "x")


FAULTS = [
    ("CLIENT PAUSE WRITE 2.5s", Standalone, "503", pause_write, None, None, False),
    ("DEBUG SLEEP 2s (slow Redis)", Standalone, "503", slow, None, None, False),
    ("stop + restart, policy 503", Standalone, "503", stop_restart, None, None, False),
    ("stop + restart, policy local", Standalone, "local", stop_restart, None, None, False),
    ("SENTINEL FAILOVER", Sentinel, "503", failover, None, None, False),
    ("CLUSTER FAILOVER", Cluster, "503", failover, None, None, False),
    ("nginx reload x2", Standalone, "503", reloads, None, None, False),
    ("kill -9 of workers x2", Standalone, "503", kill9, None, None, True),
    ("wrong type at keys", Standalone, "503", wrong_type, None, plant_victim, False),
]


def main():
    if not os.path.exists(MODULE):
        sys.exit(f"{MODULE} is missing: run 'make build' first")
    only = sys.argv[1:]
    random.seed()
    rows = []
    start = time.time()
    for name, topo, policy, fault, after, prepare, dropped_ok in FAULTS:
        if only and not any(o.lower() in name.lower() for o in only):
            continue
        t = time.time()
        row = scenario(name, topo, policy, fault, after, prepare, dropped_ok)
        row["secs"] = time.time() - t
        rows.append(row)
        print(f"  {name}: done in {row['secs']:.1f}s", file=sys.stderr, flush=True)
    head = ("fault", "requests", "5xx unchosen", "sessions lost", "logins lost", "logouts lost", "503 (policy)")
    widths = [max(len(head[0]), *(len(r["name"]) for r in rows))] + [len(h) for h in head[1:]]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    print(line(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    failed = False
    for r in rows:
        print(line((r["name"], r["requests"], r["unchosen"], r["sessions"], r["logins"], r["logouts"], r["n503"])))
        if r["unchosen"] or r["sessions"] or r["logins"] or r["logouts"]:
            failed = True
    for r in rows:
        for note in r["notes"]:
            print(f"  {r['name']}: {note}")
    print(f"{len(rows)} faults in {time.time() - start:.0f}s")
    if failed:
        sys.exit("chaos: something was lost or a 5xx was not chosen by a policy")


if __name__ == "__main__":
    main()
