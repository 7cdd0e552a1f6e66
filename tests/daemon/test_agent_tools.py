"""The agent's tools (issue 7), run inside a sandbox: apply_patch (OpenAI's
V4A patches and the structured form, applied whole or not at all, never
outside the workspace) and the shell tool's output cap."""

from __future__ import annotations

import pytest

from airlock_client import InvalidArgument


def files(s, *paths):
    return {p: (s.read(p) if s.exists(p) else None) for p in paths}


def test_add_update_move_delete_in_one_patch(fresh):
    fresh.mkdir("src")
    fresh.write("src/app.py", "import os\n\ndef greet():\n    print('Hi')\n")
    fresh.write("old.txt", "bye\n")
    fresh.write("notes.md", "one\ntwo\n")
    r = fresh.apply_patch("""*** Begin Patch
*** Add File: docs/new.md
+# New
+hello
*** Update File: src/app.py
*** Move to: src/main.py
@@ def greet():
-    print('Hi')
+    print('Hello')
*** Delete File: old.txt
*** Update File: notes.md
 one
-two
+2
*** End Patch""")
    assert sorted(r.files) == sorted([("docs/new.md", "added", ""), ("src/main.py", "updated", "src/app.py"),
                                      ("old.txt", "deleted", ""), ("notes.md", "updated", "")])
    assert r.summary.startswith("Success.")
    assert fresh.read("docs/new.md") == b"# New\nhello\n"
    assert fresh.read("src/main.py") == b"import os\n\ndef greet():\n    print('Hello')\n"
    assert not fresh.exists("src/app.py") and not fresh.exists("old.txt")
    assert fresh.read("notes.md") == b"one\n2\n"
    # Seen from inside too, as the sandbox's processes see them.
    assert fresh.exec("cat /workspace/src/main.py | tail -1").stdout == b"    print('Hello')\n"


def test_a_hunk_that_does_not_match_changes_nothing(fresh):
    fresh.write("a.txt", "alpha\nbeta\n")
    fresh.write("b.txt", "one\ntwo\n")
    before = files(fresh, "a.txt", "b.txt", "c.txt")
    with pytest.raises(InvalidArgument) as e:
        fresh.apply_patch("""*** Begin Patch
*** Add File: c.txt
+new
*** Update File: a.txt
-alpha
+ALPHA
*** Update File: b.txt
 one
-three
+3
*** End Patch""")
    message = str(e.value)
    assert "b.txt" in message and "three" in message, message  # which file, which line
    assert files(fresh, "a.txt", "b.txt", "c.txt") == before  # and nothing of it landed


def test_structured_operations(fresh):
    fresh.write("x.txt", "a\nb\n")
    r = fresh.apply_patch(operations=[
        {"type": "create_file", "path": "y.txt", "diff": "+hello\n+world"},
        {"type": "update_file", "path": "x.txt", "diff": "@@\n a\n-b\n+B"},
        {"type": "delete_file", "path": "y.txt", "diff": ""},
    ])
    assert ("x.txt", "updated", "") in r.files
    assert fresh.read("x.txt") == b"a\nB\n" and not fresh.exists("y.txt")
    with pytest.raises(InvalidArgument, match="apply_patch.operations"):
        fresh.apply_patch(operations=[{"type": "rename_file", "path": "x.txt", "diff": ""}])


def test_crlf_files_stay_crlf(fresh):
    fresh.write("win.txt", b"one\r\ntwo\r\n")
    fresh.apply_patch("*** Begin Patch\n*** Update File: win.txt\n one\n-two\n+2\n*** End Patch\n")
    assert fresh.read("win.txt") == b"one\r\n2\r\n"


@pytest.mark.parametrize("path", ["../escape.txt", "/etc/passwd", "a/../../b", "x\x00y"])
def test_paths_outside_the_workspace_are_refused(fresh, path):
    with pytest.raises(InvalidArgument, match="apply_patch.patch"):
        fresh.apply_patch(f"*** Begin Patch\n*** Add File: {path}\n+x\n*** End Patch\n")
    assert fresh.exec("test -e /escape.txt || test -e /b || echo clean").stdout == b"clean\n"


def test_a_symlink_does_not_lead_out_of_the_workspace(fresh):
    # A link inside the workspace to a file outside it: the patch is refused,
    # and the file it points at is untouched.
    assert fresh.exec("echo secret > /tmp/outside && ln -s /tmp/outside /workspace/link && "
                      "ln -s /tmp /workspace/dirlink").ok
    with pytest.raises(Exception) as e:
        fresh.apply_patch("*** Begin Patch\n*** Update File: link\n-secret\n+owned\n*** End Patch\n")
    assert "link" in str(e.value)
    with pytest.raises(Exception):
        fresh.apply_patch("*** Begin Patch\n*** Add File: dirlink/planted\n+x\n*** End Patch\n")
    assert fresh.exec("cat /tmp/outside; test -e /tmp/planted || echo none").stdout == b"secret\nnone\n"


def test_bad_requests_name_the_field(fresh):
    with pytest.raises(InvalidArgument, match="exactly one of patch"):
        fresh.apply_patch()
    with pytest.raises(InvalidArgument, match="apply_patch.patch"):
        fresh.apply_patch("*** Begin Patch\n*** Frobnicate File: x\n*** End Patch\n")
    with pytest.raises(InvalidArgument, match="apply_patch.user"):
        fresh.apply_patch("*** Begin Patch\n*** Add File: u.txt\n+x\n*** End Patch\n", user="nobody-such")


def test_shell_output_keeps_head_and_tail(fresh):
    # The shell tool's cap: a long build log keeps its start and its end.
    r = fresh.exec("seq 1 100000; echo done >&2", max_output_bytes=2000, keep_tail=True)
    out = r.stdout.decode()
    assert r.ok and r.stdout_truncated and len(r.stdout) <= 2000
    assert out.startswith("1\n2\n3\n") and out.endswith("99999\n100000\n")
    assert f"[... {r.stdout_omitted_bytes} bytes omitted ...]" in out
    assert r.stderr == b"done\n" and not r.stderr_truncated
    plain = fresh.exec("seq 1 100000", max_output_bytes=2000)
    assert plain.stdout_truncated and len(plain.stdout) == 2000 and plain.stdout.startswith(b"1\n2\n")


def test_agents_md_from_the_root_down_to_cwd(fresh):
    fresh.write("AGENTS.md", "root rules\n")
    fresh.mkdir("pkg/sub", parents=True)
    fresh.write("pkg/sub/AGENTS.md", "sub rules\n")
    fresh.write("other.md", "not instructions\n")
    assert fresh.instructions() == [("AGENTS.md", "root rules\n")]
    # pkg has none: skipped; the nearest comes last.
    assert fresh.instructions("pkg/sub") == [("AGENTS.md", "root rules\n"), ("pkg/sub/AGENTS.md", "sub rules\n")]
    assert fresh.instructions("/workspace/pkg/sub") == fresh.instructions("pkg/sub")
    # A link is not followed out of the workspace.
    assert fresh.exec("echo secret > /tmp/s && ln -s /tmp/s /workspace/pkg/AGENTS.md").ok
    assert [p for p, _ in fresh.instructions("pkg")] == ["AGENTS.md"]
    for bad in ("../..", "/etc", "pkg/../../x"):
        with pytest.raises(InvalidArgument, match="instructions.cwd"):
            fresh.instructions(bad)


def test_read_lines_and_view_image(fresh):
    fresh.write("big.txt", "".join(f"line {i}\n" for i in range(1, 1001)))
    r = fresh.read_lines("big.txt", 10, 3)
    assert r == {"content": "line 10\nline 11\nline 12\n", "first_line": 10, "last_line": 12, "total_lines": 1000,
                 "more": True}
    assert fresh.read_lines("big.txt", 999)["content"] == "line 999\nline 1000\n"
    fresh.write("latin1.txt", b"caf\xe9\n")  # not UTF-8: the reply's string carries U+FFFD
    assert fresh.read_lines("latin1.txt")["content"] == "caf\ufffd\n"
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
    fresh.write("pic.png", png)
    assert fresh.view_image("pic.png") == (png, "image/png")
    from airlock_client import FailedPrecondition
    with pytest.raises(FailedPrecondition, match="not an image"):
        fresh.view_image("big.txt")


def test_a_write_that_fails_midway_puts_back_what_was_written(fresh):
    # As an unprivileged user: open/x.txt can be rewritten, locked/y.txt can
    # be read but not replaced (its directory isn't writable). Both hunks
    # match; the write of y fails; x is put back.
    assert fresh.exec("mkdir -p /workspace/open /workspace/locked && chmod 777 /workspace/open && "
                      "echo old-x > /workspace/open/x.txt && chmod 666 /workspace/open/x.txt && "
                      "echo old-y > /workspace/locked/y.txt && chmod 644 /workspace/locked/y.txt").ok
    with pytest.raises(Exception) as e:
        fresh.apply_patch("*** Begin Patch\n*** Update File: open/x.txt\n-old-x\n+new-x\n"
                          "*** Update File: locked/y.txt\n-old-y\n+new-y\n*** End Patch\n", user="65534:65534")
    assert "nothing of the patch was kept" in str(e.value), e.value
    assert fresh.read("open/x.txt") == b"old-x\n" and fresh.read("locked/y.txt") == b"old-y\n"


def test_skills_listed_loaded_on_demand_and_staged(base_dir):
    from airlock_client import FailedPrecondition, InvalidArgument, NotFound
    from conftest import own_daemon

    skills = base_dir / "skills"
    (skills / "pdf-forms" / "scripts").mkdir(parents=True)
    (skills / "pdf-forms" / "SKILL.md").write_text(
        "---\nname: pdf-forms\ndescription: \"Fill PDF forms with pdftk.\"\n---\nRun scripts/fill.sh FORM DATA.\n")
    (skills / "pdf-forms" / "scripts" / "fill.sh").write_text("#!/bin/sh\necho filling\n")
    (skills / "broken").mkdir()
    (skills / "broken" / "SKILL.md").write_text("no front matter\n")
    (skills / "pdf-forms" / "leak").symlink_to("/etc/passwd")
    with own_daemon(base_dir, "skills", extra=("--skills-dir", str(skills))) as d:
        c = d.client()
        # Names and descriptions only; a malformed skill is left out.
        assert c.list_skills() == [("pdf-forms", "Fill PDF forms with pdftk.")]
        k = c.get_skill("pdf-forms")
        assert k["body"] == "Run scripts/fill.sh FORM DATA.\n" and k["files"] == ["scripts/fill.sh"]
        assert c.read_skill_file("pdf-forms", "scripts/fill.sh") == b"#!/bin/sh\necho filling\n"
        for bad in ("../pdf-forms/SKILL.md", "/etc/passwd"):
            with pytest.raises(InvalidArgument):
                c.read_skill_file("pdf-forms", bad)
        with pytest.raises(FailedPrecondition):  # a symlink: not followed
            c.read_skill_file("pdf-forms", "leak")
        with pytest.raises(NotFound):
            c.get_skill("no-such")
        with pytest.raises(InvalidArgument):
            c.get_skill("../etc")
        s = c.create()
        assert s.stage_skills(["pdf-forms"]) == ["/workspace/.skills/pdf-forms"]
        r = s.exec("cat /workspace/.skills/pdf-forms/SKILL.md | head -2; sh /workspace/.skills/pdf-forms/scripts/fill.sh")
        assert r.stdout == b"---\nname: pdf-forms\nfilling\n"
        s.delete()
        c.close()


def test_without_a_skills_dir_skills_are_refused_plainly(client):
    from airlock_client import FailedPrecondition
    with pytest.raises(FailedPrecondition, match="skills_dir is not set"):
        client.list_skills()


def test_search_by_regex_and_glob_inside_the_sandbox(fresh):
    # Files made by a command in the sandbox: the search sees the sandbox's tree.
    r = fresh.exec(["sh", "-c", "mkdir -p src/deep .git && printf 'def f():\\n    return 42\\n' > src/a.py && "
                   "printf 'x = 42\\n' > src/deep/b.ts && printf 'build/\\n' > .gitignore && mkdir build && "
                   "echo 'return 42' > build/gen.py && printf 'bad \\377 byte 42\\n' > latin1.txt && "
                   "ln -s /etc link && chmod 600 src/deep/b.ts"])
    assert r.exit_code == 0, r.stderr
    found = fresh.search(r"return \d+")
    assert found["matches"] == [("src/a.py", 2, "    return 42")]  # build/ is ignored (.gitignore in a repo)
    assert found["files_searched"] == 3 and not found["truncated"]
    assert fresh.search("42", globs=["*.ts"])["matches"] == [("src/deep/b.ts", 1, "x = 42")]
    assert [m[0] for m in fresh.search("42", no_ignore=True, files_with_matches=True)["matches"]] == [
        "build/gen.py", "latin1.txt", "src/a.py", "src/deep/b.ts"]
    # A line that isn't UTF-8 comes back with U+FFFD in place of the bad byte.
    assert fresh.search("byte")["matches"] == [("latin1.txt", 1, "bad \ufffd byte 42")]
    assert [m[0] for m in fresh.search(globs=["src/**"])["matches"]] == ["src/a.py", "src/deep/b.ts"]
    assert fresh.search("RETURN", "src", ignore_case=True)["matches"] == [("a.py", 2, "    return 42")]
    # Searched as a user who can't read b.ts: it isn't there.
    assert fresh.search("42", "src", user="1000")["matches"] == [("a.py", 2, "    return 42")]
    # The symlink to /etc is not followed.
    assert fresh.search("root:")["matches"] == []


def test_search_errors_name_the_field(fresh):
    with pytest.raises(InvalidArgument, match=r"search\.pattern: missing closing parenthesis"):
        fresh.search("a(b")
    with pytest.raises(InvalidArgument, match=r"search\.globs\[1\]: .*unclosed \["):
        fresh.search("x", globs=["*.py", "a[b"])
    with pytest.raises(InvalidArgument, match=r"search\.max_results: at most 100000"):
        fresh.search("x", max_results=100001)
    with pytest.raises(InvalidArgument, match=r"search\.files_with_matches"):
        fresh.search("", files_with_matches=True)
    from airlock_client import NotFound
    with pytest.raises(NotFound, match="search /workspace/missing"):
        fresh.search("x", "missing")
    fresh.write("many.txt", "hit\n" * 50)
    r = fresh.search("hit", max_results=10)
    assert len(r["matches"]) == 10 and r["truncated"]
