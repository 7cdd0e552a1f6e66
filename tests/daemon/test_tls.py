"""TCP is served only with TLS, and a TCP caller needs an identity.

The daemon gets a self-signed certificate (made with openssl for 127.0.0.1)
and a tokens file; a caller with the token is that uid, one without is
UNAUTHENTICATED, a cleartext client can't talk to the port at all, and a
tokens file others could read is refused at start.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import grpc
import pytest

from conftest import Daemon
from airlock_client import load_stubs
from test_hostile_init import ConfiguredDaemon

pb, rpc = load_stubs()
TOKEN = "t" * 24 + os.urandom(12).hex()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tls_daemon(base_dir):
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed: no certificate for the TLS test")
    key, cert = base_dir / "tls-key.pem", base_dir / "tls-cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True)
    tokens = base_dir / "tokens"
    tokens.write_text(f"# uid token\n4242 {TOKEN}\n")
    os.chmod(tokens, 0o600)
    port = free_port()
    d = ConfiguredDaemon(base_dir, "tls", {"tcp": {"listen": f"127.0.0.1:{port}", "cert": str(cert),
                                                  "key": str(key), "tokens_file": str(tokens)}})
    d.start()
    d.port, d.cert = port, cert.read_bytes()
    yield d
    d.stop()
    assert d.leftovers() == []


def stub(d, creds=True):
    if not creds:
        return rpc.AirlockStub(grpc.insecure_channel(f"127.0.0.1:{d.port}"))
    channel = grpc.secure_channel(f"127.0.0.1:{d.port}", grpc.ssl_channel_credentials(d.cert))
    return rpc.AirlockStub(channel)


def test_a_token_over_tls_is_that_uid(tls_daemon):
    s = stub(tls_daemon)
    md = [("authorization", "Bearer " + TOKEN)]
    sb = s.Create(pb.CreateRequest(), metadata=md, timeout=30)
    try:
        assert sb.owner_uid == 4242
        r = s.Run(pb.RunRequest(command=pb.Command(sandbox_id=sb.id, argv=["echo", "over tls"])), metadata=md,
                  timeout=30)
        assert r.stdout == b"over tls\n"
        # The unix socket's root sees it as 4242's; a TCP caller without the
        # token sees nothing at all.
        with tls_daemon.client() as c:
            assert c.get(sb.id).owner_uid == 4242
    finally:
        s.Destroy(pb.SandboxRef(id=sb.id), metadata=md, timeout=30)


@pytest.mark.parametrize("md", [[], [("authorization", "Bearer " + "x" * 40)], [("authorization", TOKEN)]])
def test_no_or_a_wrong_token_is_unauthenticated(tls_daemon, md):
    with pytest.raises(grpc.RpcError) as e:
        stub(tls_daemon).List(pb.ListRequest(), metadata=md, timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_cleartext_gets_nowhere(tls_daemon):
    with pytest.raises(grpc.RpcError) as e:
        stub(tls_daemon, creds=False).List(pb.ListRequest(), metadata=[("authorization", "Bearer " + TOKEN)],
                                           timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_readable_tokens_file_is_refused(base_dir):
    tokens = base_dir / "loose-tokens"
    tokens.write_text(f"0 {TOKEN}\n")
    os.chmod(tokens, 0o644)
    d = Daemon(base_dir, "loose")
    cfg = base_dir / "loose.json"
    cfg.write_text('{"socket": "%s", "state_dir": "%s", "tcp": {"listen": "127.0.0.1:%d", "cert": "/nonexistent",'
                   ' "key": "/nonexistent", "tokens_file": "%s"}}' % (d.socket, d.state_dir, free_port(), tokens))
    r = subprocess.run([str(d.binary), "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "mode 0600" in r.stderr or "tcp.cert" in r.stderr


@pytest.fixture(scope="module")
def mtls_daemon(base_dir):
    """A daemon that requires client certificates signed by its CA."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed: no certificates for the mutual-TLS test")
    def ossl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    d = base_dir / "mtls"
    d.mkdir()
    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(d / "ca-key.pem"), "-out", str(d / "ca.pem"), "-days", "1", "-subj", "/CN=test-ca")
    for name, cn in (("server", "localhost"), ("alice", "alice"), ("mallory", "mallory")):
        ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(d / f"{name}-key.pem"), "-out", str(d / f"{name}.csr"), "-subj", f"/CN={cn}")
        ext = d / f"{name}.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n" if name == "server" else "")
        ossl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"), "-CAkey",
             str(d / "ca-key.pem"), "-CAcreateserial", "-out", str(d / f"{name}.pem"), "-days", "1",
             "-extfile", str(ext))
    port = free_port()
    daemon = ConfiguredDaemon(base_dir, "mtls", {"tcp": {
        "listen": f"127.0.0.1:{port}", "cert": str(d / "server.pem"), "key": str(d / "server-key.pem"),
        "client_ca": str(d / "ca.pem"), "client_uids": {"alice": 5000}}})
    daemon.start()
    daemon.port, daemon.dir = port, d
    yield daemon
    daemon.stop()
    assert daemon.leftovers() == []


def mtls_stub(daemon, who):
    d = daemon.dir
    creds = grpc.ssl_channel_credentials(root_certificates=(d / "ca.pem").read_bytes(),
                                         private_key=(d / f"{who}-key.pem").read_bytes() if who else None,
                                         certificate_chain=(d / f"{who}.pem").read_bytes() if who else None)
    return rpc.AirlockStub(grpc.secure_channel(f"127.0.0.1:{daemon.port}", creds))


def test_a_client_certificate_is_its_mapped_uid(mtls_daemon):
    s = mtls_stub(mtls_daemon, "alice")
    sb = s.Create(pb.CreateRequest(), timeout=30)
    try:
        assert sb.owner_uid == 5000
    finally:
        s.Destroy(pb.SandboxRef(id=sb.id), timeout=30)


def test_an_unmapped_or_missing_certificate_gets_nothing(mtls_daemon):
    # Signed by the CA but not mapped to a uid: authenticated, yet nobody.
    with pytest.raises(grpc.RpcError) as e:
        mtls_stub(mtls_daemon, "mallory").List(pb.ListRequest(), timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # No certificate at all: the handshake itself fails.
    with pytest.raises(grpc.RpcError) as e:
        mtls_stub(mtls_daemon, None).List(pb.ListRequest(), timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
