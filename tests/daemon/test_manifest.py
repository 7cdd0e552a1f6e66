"""Create's manifest: entries, environment, users, host binds; errors name the field."""

import os
import uuid

import pytest

from airlock_client import (AirlockError, InvalidArgument, Limits, Manifest, ManifestEntry, PermissionDenied,
                            Unimplemented, User)


def inside(session, script, **kw):
    r = session.exec(["/bin/sh", "-c", script], **kw)
    assert r.exit_code == 0, r
    return r.stdout


def test_manifest_entries_env_and_users(client):
    m = Manifest(
        root="/home/agent/work",
        entries=[
            ManifestEntry("README.md", content="# hi\n"),
            ManifestEntry("bin/run.sh", content=b"#!/bin/sh\necho ran $1\n", mode=0o755),
            ManifestEntry("/home/agent/work/out", empty_dir=True, mode=0o700),
        ],
        environment={"PROJECT": "demo", "LANG": "C"},
        users=[User("agent", uid=1500, gid=1500)],
    )
    s = client.create(manifest=m)
    try:
        assert s.workspace == "/home/agent/work"
        assert inside(s, "pwd") == b"/home/agent/work\n"
        assert s.read("README.md") == b"# hi\n"
        assert inside(s, "./bin/run.sh x; stat -c %a bin/run.sh README.md out") == b"ran x\n755\n644\n700\n"
        assert inside(s, 'echo "$PROJECT $LANG"') == b"demo C\n"
        assert inside(s, "id -u; id -g; whoami", user="agent") == b"1500\n1500\nagent\n"
        assert s.stat("README.md", user="agent").size == 5
    finally:
        s.delete()


def test_a_user_s_home_is_theirs_and_clashes_are_refused(client):
    s = client.create(manifest={"users": [{"name": "dev", "uid": 1600, "gid": 1600}]})
    try:
        assert inside(s, "stat -c '%u:%g %a' /home/dev; touch /home/dev/mine && echo ok", user="dev") == \
            b"1600:1600 755\nok\n"
    finally:
        s.delete()
    # The host image has "sandbox" with uid 1000: a manifest user can't be a
    # second one of either.
    for user, field in (({"name": "x", "uid": 1000}, "users[0].uid"), ({"name": "sandbox", "uid": 1700}, "users[0].name")):
        with pytest.raises(InvalidArgument) as e:
            client.create(manifest={"users": [user]})
        assert "create.manifest." + field in e.value.message


def test_the_hostname_is_the_sandbox_s_own(client):
    s = client.create(hostname="box1")
    try:
        assert inside(s, "hostname; cat /etc/hostname") == b"box1\nbox1\n"
    finally:
        s.delete()


def test_manifest_from_dict(client):
    s = client.create(manifest={"entries": [{"path": "a.txt", "content": "A"}], "environment": {"X": "1"}},
                      limits={"pids": 64})
    try:
        assert s.read("a.txt") == b"A"
        assert inside(s, "echo $X") == b"1\n"
        assert s.info.limits.pids == 64
    finally:
        s.delete()


def create_error(client, **kw):
    with pytest.raises(AirlockError) as e:
        s = client.create(**kw)
        s.delete()
    return e.value


def test_errors_name_the_field(client, daemon):
    e = create_error(client, manifest=Manifest(entries=[ManifestEntry("../x", content="x")]))
    assert isinstance(e, InvalidArgument) and "create.manifest.entries[0].path" in e.message, e
    e = create_error(client, manifest=Manifest(entries=[ManifestEntry("ok", content="x"),
                                                        ManifestEntry("/etc/passwd", content="x")]))
    assert isinstance(e, InvalidArgument) and "create.manifest.entries[1].path" in e.message, e
    e = create_error(client, manifest=Manifest(entries=[ManifestEntry("nosource")]))
    assert isinstance(e, InvalidArgument) and "create.manifest.entries[0]" in e.message, e
    e = create_error(client, manifest=Manifest(entries=[ManifestEntry("etc", host_bind="/etc")]))
    assert isinstance(e, PermissionDenied) and "create.manifest.entries[0].host_bind" in e.message, e
    e = create_error(client, manifest=Manifest(entries=[ManifestEntry("o", output_dir="/tmp")]))
    assert isinstance(e, PermissionDenied) and "create.manifest.entries[0].output_dir" in e.message, e
    # Under the allowed root but through .. : not normalized.
    allowed = daemon.allow_roots[0]
    e = create_error(client, manifest=Manifest(entries=[ManifestEntry("x", host_bind=allowed + "/../../etc")]))
    assert isinstance(e, InvalidArgument) and "create.manifest.entries[0].host_bind" in e.message, e
    e = create_error(client, manifest=Manifest(root="relative"))
    assert isinstance(e, InvalidArgument) and "create.manifest.root" in e.message, e
    e = create_error(client, manifest=Manifest(users=[User("root", uid=0)]))
    assert isinstance(e, InvalidArgument) and "create.manifest.users[0]" in e.message, e
    e = create_error(client, limits=Limits(cpus=-1))
    assert isinstance(e, InvalidArgument) and "create.limits.cpus" in e.message, e
    e = create_error(client, seccomp_profile="../../etc/passwd")
    assert isinstance(e, InvalidArgument) and "create.seccomp_profile" in e.message, e
    e = create_error(client, labels={"bad key!": "v"})
    assert isinstance(e, InvalidArgument) and "create.labels" in e.message, e
    e = create_error(client, image="no-such-image-xyz")
    assert "create.image" in e.message, e
    with pytest.raises(ValueError):
        client.create(manifest=Manifest(entries=[ManifestEntry("x", content="a", empty_dir=True)]))


def test_host_bind_and_output_dir(client, daemon):
    allowed = daemon.allow_roots[0]
    src = os.path.join(allowed, "src-" + uuid.uuid4().hex[:8])
    out = os.path.join(allowed, "out-" + uuid.uuid4().hex[:8])
    os.mkdir(src)
    os.mkdir(out)
    with open(os.path.join(src, "input.txt"), "w") as f:
        f.write("from the host\n")
    m = Manifest(entries=[ManifestEntry("src", host_bind=src), ManifestEntry("out", output_dir=out)])
    try:
        s = client.create(manifest=m)
    except Unimplemented as e:
        pytest.skip(f"host mounts not served: {e.message}")
    try:
        assert s.read("src/input.txt") == b"from the host\n"
        assert inside(s, "cat src/input.txt") == b"from the host\n"
        r = s.exec(["/bin/sh", "-c", "echo x > src/new"])
        assert r.exit_code != 0  # read-only
        assert not os.path.exists(os.path.join(src, "new"))
        inside(s, "echo result > out/result.txt")
        with open(os.path.join(out, "result.txt")) as f:
            assert f.read() == "result\n"
    finally:
        s.delete()
    # What was written to the output dir survives the sandbox.
    assert os.path.exists(os.path.join(out, "result.txt"))
