#!/usr/bin/python3
"""The egress proxy's benchmarks (issue 5): tunnel throughput against a direct
transfer on loopback, and the latency a request gains through the proxy,
plain and intercepted (TLS terminated, a secret injected). Needs root (it runs
airlockd) and openssl; not run in CI; nothing here asserts a timing.

    tools/bench/egress.py [--build DIR] [--mib N] [--runs N] [--requests N]

Set-up, printed with the results:
- airlockd with an egress config: bench.test resolves to 127.0.0.1 (static),
  a secret bound to it, the upstream CA made here with openssl.
- Upstreams are threads of this process on 127.0.0.1: a "blast" server that
  sends N MiB from a file in /dev/shm with sendfile(2) on each connection, and
  an HTTP and an HTTPS server answering a small body.
- The same client code runs on the host (direct, no proxy) and inside a
  sandbox (through the relay and airlock-proxy): throughput in a transparent
  sandbox (a raw TCP stream: relay -> proxy -> upstream, all spliced),
  latency in an explicit-mode sandbox (HTTP_PROXY; one request per
  connection, as the proxy serves plain HTTP), and through the TLS
  interception with the secret swapped in.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CLIENT = r"""
import json, os, socket, ssl, sys, time
mode = os.environ["MODE"]
out = {}
if mode == "blast":
    times = []
    for _ in range(int(os.environ["RUNS"])):
        t = time.perf_counter()
        s = socket.create_connection((os.environ["HOST"], int(os.environ["PORT"])))
        buf = bytearray(1 << 20); got = 0; want = int(os.environ["BYTES"])
        view = memoryview(buf)
        while got < want:
            n = s.recv_into(view)
            if n == 0: break
            got += n
        s.close()
        times.append((time.perf_counter() - t, got))
    out["runs"] = times
else:
    # One request per connection, the same code direct and through the
    # proxy (a CONNECT first for HTTPS, an absolute URI for HTTP); the TLS
    # context is made once, outside the timing.
    port = int(os.environ["PORT"])
    proxy = os.environ.get("VIA_PROXY") == "1"
    ctx = ssl.create_default_context(cafile=os.environ["CAFILE"]) if mode == "https" else None
    auth = os.environ.get("TOKEN", "none")
    times = []
    for i in range(int(os.environ["N"])):
        t = time.perf_counter()
        s = socket.create_connection(("127.0.0.1", 3128 if proxy else port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        target = "/"
        if proxy and mode == "https":
            s.sendall(b"CONNECT bench.test:%d HTTP/1.1\r\nHost: bench.test:%d\r\n\r\n" % (port, port))
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
        elif proxy:
            target = "http://bench.test:%d/" % port
        if ctx:
            s = ctx.wrap_socket(s, server_hostname="bench.test")
        s.sendall(("GET %s HTTP/1.1\r\nHost: bench.test:%d\r\nAuthorization: Bearer %s\r\n"
                   "Connection: close\r\n\r\n" % (target, port, auth)).encode())
        data = b""
        while True:
            b = s.recv(65536)
            if not b: break
            data += b
        assert b" 200 " in data.split(b"\r\n")[0], data[:200]
        s.close()
        times.append(time.perf_counter() - t)
    out["times"] = times
print(json.dumps(out))
"""


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", "/CN=bench CA", "-keyout", "ca.key", "-out", "ca.pem",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign", cwd=d)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=bench.test",
            "-keyout", "leaf.key", "-out", "leaf.csr", cwd=d)
    (d / "leaf.ext").write_text("subjectAltName=DNS:bench.test\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", "leaf.ext", "-out", "leaf.pem", cwd=d)


def blast_server(path: Path) -> int:
    srv = socket.create_server(("127.0.0.1", 0), backlog=64)
    size = path.stat().st_size

    def serve(c: socket.socket) -> None:
        with c, open(path, "rb") as f:
            off = 0
            while off < size:
                n = os.sendfile(c.fileno(), f.fileno(), off, size - off)
                if n <= 0:
                    break
                off += n

    def loop() -> None:
        while True:
            c, _ = srv.accept()
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return srv.getsockname()[1]


def http_server(cert: Path | None = None, key: Path | None = None) -> int:
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            # As production servers do: no Nagle on the response's writes.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self) -> None:
            body = b"ok\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    if cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.server_address[1]


def run_host(env: dict) -> dict:
    e = dict(os.environ, **{k: str(v) for k, v in env.items()})
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        e.pop(k, None)
    r = subprocess.run([sys.executable, "-c", CLIENT], env=e, capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def run_in(session, env: dict) -> dict:
    r = session.exec(["python3", "-c", CLIENT], env={k: str(v) for k, v in env.items()}, timeout_ms=600000)
    if not r.ok:
        raise SystemExit(f"client in the sandbox failed: {r.stdout.decode()} {r.stderr.decode()}")
    return json.loads(r.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(REPO / "build"))
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--requests", type=int, default=300)
    a = ap.parse_args()
    build = Path(a.build).resolve()
    sys.path.insert(0, str(REPO / "harness" / "clients" / "python"))
    os.environ["AIRLOCK_PYTHON_STUBS"] = str(build / "python")
    from airlock_client import AirlockClient

    work = Path(tempfile.mkdtemp(prefix="airlock-egress-bench-"))
    make_pki(work)
    blob = Path(tempfile.mkstemp(prefix="airlock-egress-blob-", dir="/dev/shm")[1])
    with open(blob, "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(a.mib):
            f.write(chunk)
    blast = blast_server(blob)
    plain = http_server()
    tls = http_server(work / "leaf.pem", work / "leaf.key")
    token = "bench-" + os.urandom(8).hex()
    cfg = {"egress": {"user": "nobody", "upstream_ca_file": str(work / "ca.pem"),
                      "resolve": {"bench.test": ["127.0.0.1"]},
                      "secrets": {"bench": {"value": token, "env": "BENCH_TOKEN", "hosts": ["bench.test"],
                                            "header": "Authorization"}}}}
    (work / "airlockd.json").write_text(json.dumps(cfg))
    os.chmod(work / "airlockd.json", 0o600)
    sock = str(work / "airlockd.sock")
    log = open(work / "airlockd.log", "wb")
    daemon = subprocess.Popen([str(build / "airlockd"), "--socket", sock, "--state-dir", str(work / "state"),
                               "--config", str(work / "airlockd.json")], stdout=log, stderr=log)
    try:
        for _ in range(200):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        time.sleep(0.2)
        c = AirlockClient(sock)
        allow = ["bench.test", "127.0.0.1/32"]
        t_box = c.create(network="proxy", egress={"allow": allow, "transparent": True})
        x_box = c.create(network="proxy", egress={"allow": allow, "secrets": ["bench"]})
        nbytes = a.mib << 20
        print(f"=== egress proxy benchmarks, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} ===")
        print(f"host: {os.uname().release}, {os.cpu_count()} CPUs; {a.mib} MiB per transfer, {a.runs} transfers; "
              f"{a.requests} requests per latency row; medians")

        def gbit(runs: list) -> float:
            return statistics.median(b * 8 / t / 1e9 for t, b in runs)

        blast_env = {"MODE": "blast", "PORT": blast, "BYTES": nbytes, "RUNS": a.runs}
        direct = run_host({**blast_env, "HOST": "127.0.0.1"})["runs"]
        tunnel = run_in(t_box, {**blast_env, "HOST": "bench.test"})["runs"]
        assert all(b == nbytes for _, b in tunnel), "short transfer through the tunnel"
        d, t = gbit(direct), gbit(tunnel)
        print("\n| transfer on loopback | Gbit/s (median) | vs direct |\n|---|---|---|")
        print(f"| direct (host client -> upstream) | {d:.2f} | 1.00 |")
        print(f"| through the relay and airlock-proxy (transparent, spliced) | {t:.2f} | {t / d:.2f} |")

        def ms(times: list) -> float:
            return statistics.median(times) * 1000

        n = a.requests
        rows = []
        base = {"N": n, "CAFILE": work / "ca.pem"}
        hp = run_host({**base, "MODE": "http", "PORT": plain})["times"]
        xp = run_in(x_box, {**base, "MODE": "http", "PORT": plain, "VIA_PROXY": 1})["times"]
        rows.append(("plain HTTP GET", ms(hp), ms(xp)))
        # Inside, the proxy's CA (in the sandbox's bundle) signs bench.test.
        hs = run_host({**base, "MODE": "https", "PORT": tls, "TOKEN": token})["times"]
        xs = run_in(x_box, {**base, "MODE": "https", "PORT": tls, "VIA_PROXY": 1, "TOKEN": "airlock:bench",
                            "CAFILE": "/etc/airlock/ca-bundle.pem"})["times"]
        rows.append(("HTTPS GET, intercepted (TLS both sides, secret injected)", ms(hs), ms(xs)))
        print("\n| request (new connection each) | direct ms | through the proxy ms | added ms |\n|---|---|---|---|")
        for name, dms, pms in rows:
            print(f"| {name} | {dms:.2f} | {pms:.2f} | {pms - dms:.2f} |")
        print(f"\ncommand: tools/bench/egress.py --mib {a.mib} --runs {a.runs} --requests {a.requests}")
        t_box.delete()
        x_box.delete()
        c.close()
    finally:
        daemon.terminate()
        daemon.wait(30)
        blob.unlink()


if __name__ == "__main__":
    main()
