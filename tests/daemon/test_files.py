"""The file API, checked against what programs inside the sandbox see."""

import hashlib
import io
import os
import tarfile

import pytest

from airlock_client import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unimplemented


def inside(session, script):
    r = session.exec(["/bin/sh", "-c", script])
    assert r.exit_code == 0, r
    return r.stdout


def test_write_read_round_trip(fresh):
    info = fresh.write("hello.txt", b"hello world\n")
    assert info.type == "FILE" and info.size == 12
    assert fresh.read("hello.txt") == b"hello world\n"
    assert fresh.read(fresh.workspace + "/hello.txt") == b"hello world\n"
    assert inside(fresh, "cat /workspace/hello.txt") == b"hello world\n"
    # Text is UTF-8.
    fresh.write("t.txt", "grüße")
    assert inside(fresh, "cat t.txt") == "grüße".encode()


def test_large_file_and_offsets(fresh):
    data = os.urandom(5 * 1024 * 1024 + 123)
    info = fresh.write("big.bin", data)
    assert info.size == len(data)
    assert fresh.read("big.bin") == data
    digest = inside(fresh, "sha256sum big.bin").split()[0].decode()
    assert digest == hashlib.sha256(data).hexdigest()
    assert fresh.read("big.bin", offset=1000, length=5000) == data[1000:6000]
    assert fresh.read("big.bin", offset=len(data) - 10) == data[-10:]
    assert fresh.read("big.bin", offset=len(data) + 10) == b""
    # Written inside, read outside.
    inside(fresh, "head -c 3000000 /dev/urandom > made.bin")
    got = fresh.read("made.bin")
    assert hashlib.sha256(got).hexdigest() == inside(fresh, "sha256sum made.bin").split()[0].decode()


def test_write_modes(fresh):
    fresh.write("f", b"one\n")
    fresh.write("f", b"two\n", write_mode="append")
    assert fresh.read("f") == b"one\ntwo\n"
    fresh.write("f", b"3\n", write_mode="truncate")
    assert inside(fresh, "cat f") == b"3\n"
    fresh.write("f", b"atomic\n", write_mode="atomic")
    assert fresh.read("f") == b"atomic\n"
    with pytest.raises(AlreadyExists) as e:
        fresh.write("f", b"x", write_mode="create")
    assert "/workspace/f" in e.value.message
    assert fresh.read("f") == b"atomic\n"
    fresh.write("new", b"n", write_mode="create")
    assert fresh.read("new") == b"n"
    fresh.write("appended", b"a", write_mode="append")  # append creates
    assert fresh.read("appended") == b"a"
    with pytest.raises(ValueError):
        fresh.write("f", b"x", write_mode="bogus")


def test_mode_parents_and_user(fresh):
    info = fresh.write("secret", b"s", mode=0o600)
    assert info.mode & 0o7777 == 0o600
    assert inside(fresh, "stat -c %a secret") == b"600\n"
    with pytest.raises(NotFound):
        fresh.write("a/b/c.txt", b"x")
    fresh.write("a/b/c.txt", b"x", make_parents=True)
    assert inside(fresh, "cat a/b/c.txt") == b"x"
    fresh.write("/tmp/owned", b"o", user="1234:4321")
    assert inside(fresh, "stat -c %u:%g /tmp/owned") == b"1234:4321\n"
    # A user's identity applies: uid 1234 can't write root's 0755 /etc.
    with pytest.raises(Exception) as e:
        fresh.write("/etc/nope", b"x", user="1234")
    assert e.value.code == "PERMISSION_DENIED", e.value


def test_ls_stat(fresh):
    fresh.mkdir("d")
    fresh.write("d/one", b"1")
    fresh.write("d/two", b"22")
    inside(fresh, "ln -s one d/link && mkdir d/sub")
    entries = {e.name: e for e in fresh.ls("d")}
    assert set(entries) == {"one", "two", "link", "sub"}
    assert entries["two"].type == "FILE" and entries["two"].size == 2
    assert entries["sub"].type == "DIRECTORY"
    assert entries["link"].type == "SYMLINK" and entries["link"].link_target == "one"
    st = fresh.stat("d/link")
    assert st.type == "SYMLINK" and st.link_target == "one"
    st = fresh.stat("d/link", follow_symlinks=True)
    assert st.type == "FILE" and st.size == 1
    assert fresh.stat("d").is_dir
    assert {e.name for e in fresh.ls()} >= {"d"}  # default: the workspace
    with pytest.raises(NotFound) as e:
        fresh.stat("missing")
    assert "missing" in e.value.message
    assert not fresh.exists("missing") and fresh.exists("d/one")
    with pytest.raises(NotFound):
        fresh.ls("missing-dir")
    with pytest.raises(FailedPrecondition):
        fresh.ls("d/one")  # not a directory


def test_mkdir_rm_rename(fresh):
    with pytest.raises(NotFound):
        fresh.mkdir("x/y/z")
    info = fresh.mkdir("x/y/z", parents=True, mode=0o700)
    assert info.is_dir and info.mode & 0o777 == 0o700
    assert inside(fresh, "test -d x/y/z && stat -c %a x/y/z") == b"700\n"
    with pytest.raises(AlreadyExists):
        fresh.mkdir("x/y/z")
    fresh.mkdir("x/y/z", parents=True)  # -p: an existing dir is fine
    fresh.write("x/y/z/f", b"f")
    with pytest.raises(FailedPrecondition):
        fresh.rm("x")  # not empty
    fresh.rm("x", recursive=True)
    assert inside(fresh, "test -e x || echo gone") == b"gone\n"
    with pytest.raises(NotFound):
        fresh.rm("x")
    fresh.write("a", b"A")
    fresh.write("b", b"B")
    fresh.rename("a", "c")
    assert inside(fresh, "cat c; test -e a || echo nogone") == b"Anogone\n"
    with pytest.raises(AlreadyExists):
        fresh.rename("c", "b", no_replace=True)
    fresh.rename("c", "b")
    assert fresh.read("b") == b"A"
    fresh.mkdir("sub")
    fresh.rename("b", fresh.workspace + "/sub/moved")
    assert inside(fresh, "cat sub/moved") == b"A"
    fresh.rename("sub", "sub2")  # a directory
    assert fresh.read("sub2/moved") == b"A"
    with pytest.raises(InvalidArgument) as e:
        fresh.rm("/")
    assert "remove.file.path" in e.value.message
    with pytest.raises(InvalidArgument) as e:
        fresh.read("")
    assert "read_file.file.path" in e.value.message


def test_persist_and_hydrate_workspace(client, fresh):
    fresh.write("proj/main.py", b"print('hi')\n", make_parents=True)
    fresh.write("proj/data.bin", os.urandom(200_000))
    inside(fresh, "ln -s main.py proj/link.py && mkdir -p proj/empty && chmod 0750 proj/empty")
    try:
        tar = fresh.persist_workspace()
    except Unimplemented as e:
        pytest.skip(f"daemon answers UNIMPLEMENTED for Download: {e.message}")
    names = tarfile.open(fileobj=io.BytesIO(tar)).getnames()
    assert any(n.rstrip("/").endswith("proj/main.py") for n in names), names
    other = client.create(labels={"test": "hydrate"})
    try:
        try:
            other.hydrate_workspace(tar)
        except Unimplemented as e:
            pytest.skip(f"daemon answers UNIMPLEMENTED for Upload: {e.message}")
        assert other.read("proj/main.py") == b"print('hi')\n"
        assert other.read("proj/data.bin") == fresh.read("proj/data.bin")
        assert other.stat("proj/link.py").link_target == "main.py"
        assert inside(other, "stat -c %a proj/empty") == b"750\n"
    finally:
        other.delete()


def test_upload_refuses_escaping_tar(fresh):
    """A tar entry naming ../ or an absolute path must not land outside the target."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name in ("../../escaped-rel", "/tmp/escaped-abs"):
            info = tarfile.TarInfo(name)
            info.size = 3
            t.addfile(info, io.BytesIO(b"bad"))
    try:
        fresh.upload("/workspace/up", buf.getvalue())
    except Unimplemented as e:
        pytest.skip(f"daemon answers UNIMPLEMENTED for Upload: {e.message}")
    except Exception:
        pass  # refusing the archive is fine
    assert inside(fresh, "for f in /escaped-rel /workspace/escaped-rel /tmp/escaped-abs; do test -e $f && echo $f; done; echo clean") == b"clean\n"
